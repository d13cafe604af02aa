"""Derive a checkpoint's gate pattern from its chat template, for any template (not only Llama-3).

ArmoRM's gate token is the last token of the rendered prompt (Llama-3: the `<|eot_id|>` closing the user
turn) and the pattern runs from it through the assistant header. The ids are read by character offsets
inside tokenised *whole* conversations, never from the header alone: with ByteLevel BPE a trailing
`"\\n\\n"` merges differently once response text follows (environment.md, "Gate-pattern pitfall"). Several
response openings must give the same ids, or the pattern would depend on the response.
"""

from __future__ import annotations

from typing import Any

_PROBE_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
_PROBE_OPENINGS = ("Paris is the capital of France.", "sure", "1. Yes", '"Quoted"')


def derive_gate_pattern(tokenizer: Any) -> tuple[int, ...]:
    """The ids from the prompt's last token through the assistant header, as a conversation tokenises them."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat_template; add one to tokenizer_config.json")
    found = {_pattern_in_conversation(tokenizer, opening) for opening in _PROBE_OPENINGS}
    if len(found) != 1:
        raise ValueError(
            f"the gate pattern depends on the response's first characters ({sorted(found)}); this tokenizer "
            "merges the assistant header with response text. Pass the pattern explicitly (--gate-pattern ID ...)"
        )
    return found.pop()


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def _pattern_in_conversation(tokenizer: Any, response: str) -> tuple[int, ...]:
    prompt_text = _render(tokenizer, _PROBE_PROMPT)
    header_end = len(_render(tokenizer, _PROBE_PROMPT, generation_prompt=True))
    full_text = _render(tokenizer, [*_PROBE_PROMPT, {"role": "assistant", "content": response}])
    if not full_text.startswith(prompt_text) or full_text.find(response, header_end) != header_end:
        raise ValueError(
            "cannot derive the gate pattern: the chat template does not render the conversation as prompt, "
            "assistant header, response. Pass the pattern explicitly (--gate-pattern ID ID ...)"
        )
    enc = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    first = next(i for i, (a, b) in enumerate(offsets) if a <= len(prompt_text) - 1 < b)
    stop = next(i for i, (a, b) in enumerate(offsets) if b > header_end)
    if offsets[stop][0] < header_end:
        raise ValueError("a token straddles the assistant header and the response; pass --gate-pattern explicitly")
    return tuple(int(t) for t in ids[first:stop])
