"""paho's MQTT 5 Properties and ReasonCode with shared tables (gateway.paho_tables) behave as
paho's own."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import paho.mqtt.properties
import paho.mqtt.reasoncodes
import pytest
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes

from gateway import paho_tables
from gateway.paho_tables import TABLES

#: paho's class (untyped), as the gateway uses it: its tables shared.
Properties: Any = paho.mqtt.properties.Properties

#: A value of each of paho's property types (by its index in ``Properties.types``).
SAMPLE_BY_TYPE: dict[int, Any] = {
    0: 1,  # Byte
    1: 300,  # Two Byte Integer
    2: 70000,  # Four Byte Integer
    3: 200,  # Variable Byte Integer
    4: b"\x00correlation\xff",  # Binary Data
    5: "lockgate/replies/Café",  # UTF-8 Encoded String
    6: ("site", "Ø 7"),  # UTF-8 String Pair
}


def pristine(module: ModuleType) -> ModuleType:
    """A second copy of one of paho's modules, its classes untouched by ``share``."""
    spec = importlib.util.spec_from_file_location(
        f"{module.__name__}_pristine", module.__file__
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filled(cls: Any, packet_type: int) -> Any:
    """A Properties of ``packet_type`` with every property that applies to it set."""
    made = cls(packet_type)
    for name, ident in made.names.items():
        kind, packets = made.properties[ident]
        if packet_type in packets:
            setattr(made, name.replace(" ", ""), SAMPLE_BY_TYPE[kind])
    return made


@pytest.fixture(scope="module")
def paho_own() -> Any:
    paho_tables.share()
    untouched = pristine(paho.mqtt.properties).Properties
    assert untouched.__init__ is not Properties.__init__
    return untouched


@pytest.mark.parametrize("packet_type", range(1, PacketTypes.indexes[-1] + 1))
def test_every_packet_type_packs_and_unpacks_as_with_paho_own_tables(
    paho_own: Any, packet_type: int
) -> None:
    ours = filled(Properties, packet_type)
    theirs = filled(paho_own, packet_type)
    assert ours.pack() == theirs.pack()
    assert ours.json() == theirs.json()
    back = Properties(packet_type)
    back.unpack(ours.pack())
    assert back.json() == theirs.json()
    back.unpack(Properties(packet_type).pack())  # what the last packet set is cleared first
    assert back.json() == {}


def test_instances_share_one_set_of_tables_and_a_name_is_found_as_paho_finds_it(
    paho_own: Any,
) -> None:
    one = Properties(PacketTypes.PUBLISH)
    other = Properties(PacketTypes.PUBACK)
    assert all(getattr(one, name) is getattr(other, name) for name in TABLES)
    reference = paho_own(PacketTypes.PUBLISH)
    for name, ident in reference.names.items():
        compressed = name.replace(" ", "")
        assert one.getIdentFromName(compressed) == reference.getIdentFromName(compressed)
        assert one.getNameFromIdent(ident) == reference.getNameFromIdent(ident)
    assert one.getNameFromIdent(99) is reference.getNameFromIdent(99) is None
    assert one.getIdentFromName("NoSuchProperty") == reference.getIdentFromName("x") == -1
    assert other.packetType == PacketTypes.PUBACK  # each keeps its own packet type


def test_what_paho_refuses_is_still_refused(paho_own: Any) -> None:
    ours = Properties(PacketTypes.PUBACK)
    with pytest.raises(MQTTException, match="does not apply"):
        ours.CorrelationData = b"x"  # a PUBLISH property
    for made in (ours, paho_own(PacketTypes.PUBACK)):
        with pytest.raises(MQTTException, match="must be one of"):
            setattr(made, "NoSuchProperty", 1)  # noqa: B010
    assert not hasattr(Properties(PacketTypes.PUBLISH), "CorrelationData")


def test_a_reason_code_is_named_and_found_as_with_paho_own_table() -> None:
    paho_tables.share()
    theirs: Any = pristine(paho.mqtt.reasoncodes).ReasonCode
    ours: Any = paho.mqtt.reasoncodes.ReasonCode
    assert type(ours.names) is dict  # copied in one C call
    assert ours.names == dict(theirs.names)
    for identifier, names in theirs.names.items():
        for name, packet_types in names.items():
            for packet_type in packet_types:
                made = ours(packet_type, identifier=identifier)
                assert str(made) == str(theirs(packet_type, identifier=identifier)) == name
                assert ours(packet_type, aName=name).value == identifier
    assert ours(PacketTypes.PUBACK).value == theirs(PacketTypes.PUBACK).value == 0  # "Success"
    with pytest.raises(KeyError):
        ours(PacketTypes.PUBACK, identifier=99)
