"""The LLM prompt enhancer: its answer parser on well-formed and malformed answers, the fallback to
the rule-based enhancer (shown in the plan), and a tiny random Qwen2 chat model run through
transformers' text-generation pipeline (its garbage takes the fallback)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.backends.wan import WanPromptEnhancer
from model.llm_enhancer import EnhancerAnswerError, LLMEnhancer, parse_answer, user_message
from model.mvl import MVLRequest

IMG = np.zeros((16, 16, 3), np.uint8)
VID = np.zeros((5, 16, 16, 3), np.uint8)
I2V = MVLRequest("@Image_1: the fruit with the colour of a ripe banana rolls left", images=[IMG])


def answer(**d) -> str:
    return json.dumps({"task": "i2v", "prompt": "@Image_1: a yellow ball rolls left", "plan": ["a ball rolls"], **d})


def test_well_formed_answers_parse():
    a = parse_answer(answer(), I2V)
    assert (a.task, a.prompt, a.plan) == ("i2v", "@Image_1: a yellow ball rolls left", ["a ball rolls"])
    fenced = "Sure! Here it is:\n```json\n" + answer(plan="one line {with braces}") + "\n```\nEnjoy."
    b = parse_answer(fenced, I2V)
    assert b.plan == ["one line {with braces}"] and b.task == "i2v"
    assert parse_answer(json.dumps({"task": "t2v", "prompt": "a cat"}), MVLRequest("a cat")).plan == []


@pytest.mark.parametrize("text, why", [
    ("aaaaaaaa", "no JSON object"),
    ('{"task": "i2v", "prompt": "x",}', "does not parse"),
    ('["i2v"]', "no JSON object"),
    (answer(task="dance"), "unknown task 'dance'"),
    (answer(prompt="a yellow ball rolls left"), "lost the reference @Image_1"),
    (answer(prompt="  "), "no prompt"),
    (answer(plan={"a": 1}), "plan is not a list"),
    (answer(task="next_shot"), "needs a context video"),
    (answer(task="t2v"), None),  # t2v with an image is allowed (the image becomes a reference)
])
def test_malformed_answers_are_refused_with_the_reason(text, why):
    if why is None:
        assert parse_answer(text, I2V).task == "t2v"
        return
    with pytest.raises(EnhancerAnswerError, match=why):
        parse_answer(text, I2V)


def test_the_request_fixes_what_the_answer_may_say():
    edit = MVLRequest("make it snow in @Video", video=VID)
    with pytest.raises(EnhancerAnswerError, match="does not use one"):
        parse_answer(json.dumps({"task": "t2v", "prompt": "snow in @Video"}), edit)
    told = MVLRequest("a cat", task="t2v")
    with pytest.raises(EnhancerAnswerError, match="the request says the task is t2v"):
        parse_answer(json.dumps({"task": "reasoning", "prompt": "a cat"}), told)
    assert "@Video" in user_message(edit) and "Media: none" in user_message(told)


def test_a_good_answer_is_used_and_a_bad_one_falls_back_with_a_note():
    seen = []
    good = LLMEnhancer(lambda m: seen.append(m) or answer(), WanPromptEnhancer(), "qwen-test")
    out = good.enhance(I2V)
    assert out.task == "i2v" and out.prompt == "@Image_1: a yellow ball rolls left"
    assert out.plan[0] == "Enhancer: qwen-test (LLM)" and "a ball rolls" in out.plan
    assert seen[0][0]["role"] == "system" and "@Image_1" in seen[0][1]["content"]
    bad = LLMEnhancer(lambda m: answer(prompt="no reference"), WanPromptEnhancer(), "qwen-test")
    out = bad.enhance(I2V)
    assert out.plan[0].startswith("Enhancer: qwen-test's answer was not usable (the prompt lost the reference")
    assert out.task == "i2v" and out.prompt.startswith("the fruit")  # the rule-based result


def test_a_tiny_random_qwen2_runs_offline_and_its_garbage_takes_the_fallback(tmp_path):
    from tests.llm_tiny import save_tiny_qwen

    d = save_tiny_qwen(tmp_path / "tiny-qwen2-chat")
    enh = LLMEnhancer.from_pretrained(d, max_new_tokens=16)
    out = enh.enhance(I2V)
    assert enh.last_answer is not None and isinstance(enh.last_answer, str)
    assert out.plan[0].startswith("Enhancer: tiny-qwen2-chat's answer was not usable (")
    assert out.task == "i2v"


def test_the_wan_backend_shows_the_fallback_in_its_plan(tmp_path):
    from studio_backend.backend_versions import VersionLoader, register_version
    from studio_backend.studio import Studio
    from tests.llm_tiny import save_tiny_qwen
    from tests.wan_tiny import save_tiny_wan

    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        studio = Studio.open(tmp_path / "home")
        v = register_version(studio, "wan", str(save_tiny_wan(tmp_path / "wan")))
        from model.backends.wan import WanSettings

        loader = VersionLoader(studio, None, enhancer=str(save_tiny_qwen(tmp_path / "qwen")),
                               settings=WanSettings(max_sequence_length=16))
        backend = loader(v.path)  # app.py --backend wan --model DIR --enhancer DIR
        out = backend(MVLRequest("@Image_1: a red cat moves left", images=[IMG], frames=5, height=16, width=16,
                                 steps=2, guidance=1.0), seed=0)
    finally:
        torch.set_num_threads(n)
    assert out.frames.shape == (5, 16, 16, 3) and out.enhanced.task == "i2v"
    assert out.enhanced.plan[0].startswith("Enhancer: qwen's answer was not usable")
    assert out.enhanced.prompt == "a red cat moves left" and any(p.startswith("Backend: wan") for p in out.enhanced.plan)


def test_mii_serving_is_refused_without_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (as on this CPU host)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        LLMEnhancer.from_pretrained(tmp_path, serving="mii")


def test_requirements_gpu_names_mii_and_nothing_imports_it_at_start():
    import sys
    from pathlib import Path

    import model.llm_enhancer  # noqa: F401

    text = (Path(__file__).resolve().parents[1] / "requirements-gpu.txt").read_text()
    assert "deepspeed-mii==" in text and "mii" not in sys.modules
