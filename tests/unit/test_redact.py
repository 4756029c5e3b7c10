"""What redaction hides (opconform/redact.py): the run's keys, their suffixes and anything
shaped like a key."""

from __future__ import annotations

from opconform.redact import Redactor


def test_redactor_hides_known_keys_their_suffix_and_anything_key_shaped() -> None:
    redactor = Redactor(["op_sk_test_free_main", "sk-other-secret-1"])
    text = "Bearer op_sk_test_free_main; test_free_main; sk-other-secret-1; op_sk_live_abc123"
    clean = redactor.text(text)
    assert "test_free_main" not in clean and "sk-other-secret-1" not in clean
    assert "op_sk_live_abc123" not in clean
    assert redactor.find_leaks(clean) == []
    assert redactor.find_leaks(text)
