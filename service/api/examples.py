"""Request examples shown in the OpenAPI docs at `/docs`."""

from __future__ import annotations

from typing import Any

SCORE_EXAMPLES: dict[str, Any] = {
    "prompt_response": {
        "summary": "One prompt and response",
        "value": {"items": [{"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."}]},
    },
    "messages": {
        "summary": "A multi-turn conversation ending with the assistant turn",
        "value": {"items": [{"messages": [
            {"role": "system", "content": "You are concise."},
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7"},
        ]}]},
    },
    "grpo_group": {
        "summary": "A GRPO group: one prompt, many responses, the prompt computed once",
        "value": {"groups": [{"prompt": "Write a haiku about rain.",
                              "responses": ["Rain taps the window...", "Grey clouds gather...", "Drip."]}]},
    },
    "weights": {
        "summary": "Fixed objective weights (weighted = w . rewards)",
        "value": {"items": [{"prompt": "Hi", "response": "Hello!"}],
                  "weights": {"helpsteer-helpfulness": 1.0, "helpsteer-verbosity": -0.5}},
    },
    "direction": {
        "summary": "DPA preference direction (normalised server-side)",
        "value": {"items": [{"prompt": "Hi", "response": "Hello!"}],
                  "direction": {"helpsteer-helpfulness": 0.8, "helpsteer-verbosity": 0.6}},
    },
    "cgpo_baseline": {
        "summary": "CGPO calibrated reward against a baseline response",
        "value": {"groups": [{"prompt": "What is 2 + 2?", "responses": ["4", "five"], "baseline": "2 + 2 = 4"}]},
    },
}

GET_REWARD_EXAMPLES: dict[str, Any] = {
    "openrlhf": {
        "summary": "OpenRLHF --remote_rm_url body",
        "value": {
            "query": ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"],
            "prompts": ["Hi"],
            "labels": [None],
        },
    }
}
