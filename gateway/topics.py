"""What makes a string an MQTT topic the broker accepts: one set of rules for the config, the
API's reply topics and the last guard before every publish. No imports from the rest of the
package, so drivers and the gateway can both use it."""

from __future__ import annotations

import re

#: The topic length field of a PUBLISH is two bytes.
MAX_TOPIC_BYTES = 65535
#: Code points mosquitto refuses in any UTF-8 string (``mosquitto_validate_utf8``): controls,
#: surrogates and the Unicode non-characters; plus the wildcards ``mosquitto_pub_topic_check``
#: refuses in a PUBLISH topic.
_REFUSED_IN_TOPIC = re.compile(
    "[+#\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(
        re.escape(chr(plane + end))
        for plane in range(0, 0x110000, 0x10000)
        for end in (0xFFFE, 0xFFFF)
    )
    + "]"
)


def topic_problem(topic: str) -> str | None:
    """Why mosquitto would refuse ``topic`` as the topic of a PUBLISH, or None if it accepts it.

    Mosquitto answers such a PUBLISH by dropping the sender's whole connection, so anything
    that publishes to a topic it did not build itself must ask this first.
    """
    if not topic:
        return "is empty"
    refused = _REFUSED_IN_TOPIC.search(topic)
    if refused is not None:
        char = refused.group()
        if char in "+#":
            return f"contains the wildcard '{char}'"
        return f"contains U+{ord(char):04X}, which MQTT does not allow in a topic"
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        return f"is longer than {MAX_TOPIC_BYTES} bytes"
    return None


def config_topic_problem(value: str, *, single_level: bool = False) -> str | None:
    """Why ``value`` cannot be (part of) a topic the gateway publishes or subscribes to.

    Stricter than MQTT: empty levels, a leading ``$`` (broker-reserved, skipped by ``#``) and
    leading or trailing ``/`` are legal but always a mistake in a config file.
    """
    if not value:
        return "must not be empty"
    if "\0" in value:
        return "must not contain a NUL character"
    if "+" in value or "#" in value:
        return "must not contain the MQTT wildcards + or #"
    if single_level and "/" in value:
        return "must not contain /"
    if value.startswith("/") or value.endswith("/"):
        return "must not start or end with /"
    if "//" in value:
        return "must not contain empty topic levels (//)"
    if value.startswith("$"):
        return "must not start with $ (reserved for the broker)"
    problem = topic_problem(value)
    return None if problem is None else problem.replace("is ", "must not be ", 1).replace(
        "contains ", "must not contain ", 1
    )


def matches(topic: str, topic_filter: str) -> bool:
    """Whether a subscription's ``topic_filter`` (``+`` one level, ``#`` the rest) takes
    ``topic``, as the broker decides it: a filter starting with a wildcard never takes a ``$``
    topic. A loop, not aiomqtt's ``Topic.matches``: that one builds a recursive closure per call,
    a reference cycle that only the garbage collector frees, for every message received."""
    levels = topic.split("/")
    wanted = topic_filter.split("/")
    if wanted[0] == "$share":  # $share/<group>/<filter>
        wanted = wanted[2:]
    if topic.startswith("$") and wanted[0] in ("+", "#"):
        return False
    for depth, level in enumerate(wanted):
        if level == "#":
            return True
        if depth == len(levels) or level not in ("+", levels[depth]):
            return False
    return len(levels) == len(wanted)
