"""Runtime keys and sealed values (app.contract.sealing): what one side seals only the holder of the
same runtime key opens, for the same context."""

import pytest

from app.contract.logs import redact
from app.contract.sealing import RuntimeKeys, SealedValueRejected, seal, unseal


def test_both_sides_derive_the_same_keys_and_the_two_keys_differ():
    api, runtime = RuntimeKeys.derive("brk_secret-one"), RuntimeKeys.derive("brk_secret-one")
    assert api == runtime
    assert api.signing != api.sealing.hex()
    assert RuntimeKeys.derive("brk_secret-two").sealing != api.sealing


def test_a_sealed_value_opens_only_for_its_context_and_key():
    keys = RuntimeKeys.derive("brk_secret-one")
    sealed = seal(keys.sealing, {"API_TOKEN": "t0p"}, "job_1")
    assert "t0p" not in sealed
    assert unseal(keys.sealing, sealed, "job_1") == {"API_TOKEN": "t0p"}
    with pytest.raises(SealedValueRejected):
        unseal(keys.sealing, sealed, "job_2")
    with pytest.raises(SealedValueRejected):
        unseal(RuntimeKeys.derive("brk_other").sealing, sealed, "job_1")


@pytest.mark.parametrize("garbage", ["", "v1.", "v2.abcd", "v1.!!!", "v1." + "A" * 40])
def test_garbage_is_rejected_not_crashing(garbage):
    with pytest.raises(SealedValueRejected):
        unseal(RuntimeKeys.derive("brk_x").sealing, garbage, "job_1")


def test_sealing_twice_gives_different_ciphertexts():
    key = RuntimeKeys.derive("brk_x").sealing
    assert seal(key, "same", "c") != seal(key, "same", "c")


def test_runtime_keys_are_redacted_in_logs():
    assert "brk_[redacted]" in redact("key brk_abcdefghijklmnop leaked")
