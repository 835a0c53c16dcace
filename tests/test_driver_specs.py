"""One list of drivers (issue 9): every driver package exports a ``SPEC``, listed once in
``drivers.registry.SPECS``, and the configuration, the registry and the simulator all ask it."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import drivers
from drivers.registry import FACTORIES, SPECS
from drivers.sim import SimulatedLock, simulated_lock_class
from gateway.config import DRIVERS


def test_every_driver_package_is_in_the_list_once() -> None:
    packages = {
        info.name
        for info in pkgutil.iter_modules([str(Path(drivers.__file__).parent)])
        if info.ispkg
    }
    names = [spec.name for spec in SPECS]
    assert sorted(names) == sorted(packages)
    assert len(set(names)) == len(names)


def test_the_configuration_and_the_registry_ask_the_list() -> None:
    names = [spec.name for spec in SPECS]
    assert list(DRIVERS) == names
    assert list(FACTORIES) == names
    for spec in SPECS:
        assert DRIVERS[spec.name] is spec
        assert FACTORIES[spec.name] is spec.create_driver


def test_each_spec_names_its_simulated_lock() -> None:
    for spec in SPECS:
        cls = simulated_lock_class(spec.name)
        assert cls is not None
        assert issubclass(cls, SimulatedLock)
        assert cls.driver == spec.name
