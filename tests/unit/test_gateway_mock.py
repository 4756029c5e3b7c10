"""The reference gateway's mock models (gateway/mock.py): deterministic text, counted tokens."""

from __future__ import annotations

from opconform.gateway import mock


def test_mock_is_deterministic_and_counts() -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert mock.generate("m", messages, 0.7) == mock.generate("m", messages, 0.7)
    assert mock.generate("m", messages, 0.7) != mock.generate("other", messages, 0.7)
    counting = [{"role": "user", "content": "Count from 1 to 5"}]
    assert "".join(mock.generate("m", counting, None)) == "1\n2\n3\n4\n5"
    assert mock.prompt_tokens(messages) == mock.count_tokens(messages[0]["content"]) + 6
