"""Which topics a subscription's filter takes (gateway.topics.matches), as the broker decides."""

from __future__ import annotations

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.topics import matches

LEVELS = st.sampled_from(["a", "b", "lock-1", "", "ä"])


@pytest.mark.parametrize(
    ("topic", "topic_filter", "expected"),
    [
        ("lockgate/devices/d1", "lockgate/devices/d1", True),
        ("lockgate/devices/d1", "lockgate/devices/+", True),
        ("lockgate/devices/d1/state", "lockgate/devices/+", False),
        ("lockgate/devices", "lockgate/devices/+", False),
        ("lockgate/devices/d1/state", "lockgate/#", True),
        ("lockgate", "lockgate/#", True),  # "#" takes its parent level too
        ("lockgate/devices/d1", "lockgate/+/d1", True),
        ("lockgate/devices/d2", "lockgate/+/d1", False),
        ("a//b", "a/+/b", True),  # an empty level is a level
        ("zwave/Lock/99/set", "$share/hubs/zwave/+/99/set", True),
        ("$SYS/broker/uptime", "#", False),  # a wildcard first never takes a $ topic
        ("$SYS/broker/uptime", "+/broker/uptime", False),
        ("$SYS/broker/uptime", "$SYS/#", True),
        ("$SYS/broker/uptime", "$SYS/+/uptime", True),
    ],
)
def test_a_filter_takes_the_topics_mqtt_says_it_does(
    topic: str, topic_filter: str, expected: bool
) -> None:
    assert matches(topic, topic_filter) is expected


@given(
    topic=st.lists(LEVELS, min_size=1, max_size=5).map("/".join).filter(bool),
    topic_filter=st.lists(st.one_of(LEVELS, st.just("+")), min_size=1, max_size=5)
    .flatmap(lambda levels: st.sampled_from(["", "/#"]).map(lambda end: "/".join(levels) + end))
    .filter(bool),
)
def test_it_agrees_with_aiomqtt_on_every_topic_not_starting_with_a_dollar(
    topic: str, topic_filter: str
) -> None:
    """The match it replaces on the hot path (aiomqtt's, which leaves a reference cycle per
    call) agrees on all but ``$`` topics, which aiomqtt does not set apart (and an empty
    topic or filter, which neither broker nor aiomqtt allows)."""
    assert matches(topic, topic_filter) is aiomqtt.Topic(topic).matches(topic_filter)
