"""Every registered backend (``search.backends.BACKENDS``) keeps the contract ``main``,
``api`` and ``bench`` rely on: its kind names a concrete ``search.sweep.base.Sweep``
subclass (each abstract method implemented, with the base's parameters), the schema
accepts it as ``backend.kind``, and refuses a kind not registered with a did-you-mean."""

import inspect

import pytest

from search.backends import BACKENDS, backend_for
from search.spec import SpecError, load
from search.sweep.base import Sweep
from tests.made_up import DIGITS_SPEC

CONTRACT = sorted(Sweep.__abstractmethods__)


def test_the_base_declares_what_a_backend_implements():
    assert set(CONTRACT) == {"open", "run", "remaining", "resumable"}


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_registered_backend_is_a_concrete_sweep_and_a_spec_value(kind):
    sweep = backend_for(kind)
    assert inspect.isclass(sweep) and issubclass(sweep, Sweep) and sweep is not Sweep
    assert not inspect.isabstract(sweep), f"{kind}: {sorted(sweep.__abstractmethods__)} not implemented"
    for method in CONTRACT:
        own = inspect.getattr_static(sweep, method)
        assert own is not inspect.getattr_static(Sweep, method) and callable(own), f"{kind}.{method}"
        expected = inspect.signature(getattr(Sweep, method)).parameters
        assert inspect.signature(getattr(sweep, method)).parameters.keys() == expected.keys(), f"{kind}.{method}"
    assert load(DIGITS_SPEC, [f"backend.kind={kind}"]).backend.kind == kind


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_kind_not_registered_is_refused_with_a_did_you_mean(kind):
    near = f"{kind}{kind[-1]}"  # a slip of the keyboard: rayy, locall
    assert near not in BACKENDS
    with pytest.raises(SpecError) as err:
        load(DIGITS_SPEC, [f"backend.kind={near}"])
    (line,) = [str(i) for i in err.value.issues]
    assert "backend.kind: expected one of " in line and line.endswith(f"got '{near}' (did you mean '{kind}'?)"), line


def test_a_backend_registered_from_outside_is_a_spec_value(monkeypatch):
    with pytest.raises(SpecError, match=r"backend\.kind: expected one of"):
        load(DIGITS_SPEC, ["backend.kind=mine"])
    monkeypatch.setitem(BACKENDS, "mine", "search.sweep.local:LocalSweep")
    assert load(DIGITS_SPEC, ["backend.kind=mine"]).backend.kind == "mine"
    assert backend_for("mine") is backend_for("local")
