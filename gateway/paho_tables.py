"""paho's MQTT 5 ``Properties`` and ``ReasonCode`` without their tables rebuilt for every packet.

paho 2.x builds, in ``Properties.__init__``, a list of type names, a dict of 27 property names
and a dict of 27 (type, packets) entries, and it makes a ``Properties`` for every PUBLISH
received, every PUBACK and every PUBLISH sent: 5.6 us each here, three per message round, 7 %
of the gateway's time holding the GIL in a burst (docs/benchmarks.md). paho only ever reads
those tables, so one set serves every instance. Its lookups by name and by identifier, and the
``clear`` before every ``unpack``, each a scan of the 27 names (with a ``replace`` per name),
become dict lookups.

A ``ReasonCode`` (one or two for every PUBACK) copies paho's table of reason names, kept in a
read-only ``MappingProxyType`` that ``dict()`` copies entry by entry (2.0 us); kept in a plain
dict, which paho never changes either, the copy is one C call (0.4 us).
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

#: The attributes ``Properties.__init__`` sets, all of them tables that paho never changes.
TABLES = ("types", "names", "properties")


def share() -> None:
    """Every ``Properties`` made from now on shares one set of tables, and every ``ReasonCode``
    copies its names from a plain dict (once per process)."""
    if getattr(Properties, "_tables_shared", False):
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    tables = {name: getattr(template, name) for name in TABLES}
    idents = {name.replace(" ", ""): ident for name, ident in template.names.items()}
    names = {ident: name for name, ident in template.names.items()}

    def __init__(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        for name, table in tables.items():
            object.__setattr__(self, name, table)

    def getIdentFromName(self: Properties, compressedName: str) -> int:
        return idents.get(compressedName, -1)

    def getNameFromIdent(self: Properties, identifier: int) -> str | None:
        return names.get(identifier)

    def clear(self: Properties) -> None:
        values = self.__dict__  # a property's value is an attribute under its compressed name
        for name in [name for name in values if name in idents]:
            del values[name]

    setattr(Properties, "__init__", __init__)  # noqa: B010 (mypy refuses a method assigned)
    setattr(Properties, "getIdentFromName", getIdentFromName)  # noqa: B010
    setattr(Properties, "getNameFromIdent", getNameFromIdent)  # noqa: B010
    setattr(Properties, "clear", clear)  # noqa: B010
    setattr(Properties, "_tables_shared", True)  # noqa: B010
    ReasonCode.names = dict(ReasonCode.names)
