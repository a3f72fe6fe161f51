"""A prompt enhancer on a local chat model (Qwen2.5-Instruct style), behind the enhancer interface
(`enhance(MVLRequest) -> Enhanced`, model/prompt_enhancer.py).

The chat model is asked for one JSON object: the task family, the generator prompt (every
`@reference` of the request kept, so the backend still knows which image is which) and a plan.
The answer is validated (JSON, a known family that the request's media allow, the references
kept, sizes sane); an answer that does not pass is not used: the rule-based enhancer's result is
returned instead, with a plan line that says why. A small model's garbage is therefore harmless.

    enhancer = LLMEnhancer.from_pretrained("models/Qwen2.5-1.5B-Instruct", fallback=WanPromptEnhancer())
    enhancer.enhance(request).plan       # ["Enhancer: Qwen2.5-1.5B-Instruct (LLM)", "Task: i2v", ...]

Serving: transformers `pipeline("text-generation")` (CPU or GPU), or DeepSpeed-MII on a CUDA
host (`serving="mii"`, requirements-gpu.txt; imported only then, and refused with the reason on a
host without CUDA: MII's pipeline needs NCCL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .mvl import MAX_PROMPT_CHARS, TASKS, MVLRequest
from .prompt_enhancer import Enhanced

SYSTEM = (
    "You prepare requests for a video generation model. Answer with one JSON object and nothing else:\n"
    '{"task": "<family>", "prompt": "<what the video shows, one or two vivid sentences>", '
    '"plan": ["<short line>", "..."]}\n'
    f"<family> is one of: {', '.join(TASKS)}.\n"
    "Keep every @reference of the request (such as @Image_1, @Video or a subject's @Name) in the prompt, "
    "spelled exactly as given. Resolve riddles and world knowledge into plain words (a ripe banana's colour "
    "is yellow). The plan says what will be generated: subjects, their motion, the camera, the setting."
)
MAX_PLAN_LINES = 12
NEEDS_VIDEO = {"next_shot", "previous_shot", "motion_transfer", "camera_transfer", "edit_add", "edit_remove",
               "edit_replace", "background", "stylize", "material", "effects", "weather", "combined"}
NEEDS_IMAGE = {"i2v", "image_ref", "sketch"}


class EnhancerAnswerError(ValueError):
    """The chat model's answer cannot be used; the message says why (shown in the plan)."""


@dataclass
class LLMAnswer:
    task: str
    prompt: str
    plan: list[str]


def user_message(request: MVLRequest) -> str:
    media = []
    if request.images:
        media.append(f"{len(request.images)} reference image(s): " + ", ".join(
            f"@Image_{i}" for i in range(1, len(request.images) + 1)))
    if request.subjects:
        media.append("subjects: " + ", ".join(f"@{n} ({len(v)} view(s))" for n, v in request.subjects.items()))
    if request.video is not None:
        media.append("a context video: @Video" + (" with a painted edit mask" if request.mask is not None else ""))
    ann = request.annotations
    if not ann.is_empty():
        media.append(f"{len(ann.arrows)} arrow(s) and {len(ann.boxes)} box(es) drawn on the frame")
    if request.storyboard is not None:
        media.append("a storyboard")
    lines = [f"Request: {request.prompt}", "Media: " + ("; ".join(media) if media else "none")]
    if request.task:
        lines.append(f"The task is {request.task}.")
    return "\n".join(lines)


def _first_json_object(text: str) -> str:
    """The first balanced {...} in the text (models wrap JSON in prose or ``` fences)."""
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                esc = (c == "\\") and not esc
                if c == '"' and not esc:
                    in_str = False
                elif c != "\\":
                    esc = False
                continue
            if c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i + 1]
        start = text.find("{", start + 1)
    raise EnhancerAnswerError("no JSON object in the answer")


def task_fits(request: MVLRequest, task: str) -> str | None:
    """Why `task` cannot be what this request asks for (None: it can)."""
    if request.task and task != request.task:
        return f"the request says the task is {request.task}, the answer says {task}"
    if task in NEEDS_VIDEO and request.video is None:
        return f"{task} needs a context video and the request has none"
    if task in NEEDS_IMAGE and not request.images:
        return f"{task} needs a reference image and the request has none"
    if task in ("subject_ref", "novel_view") and not (request.subjects or request.images):
        return f"{task} needs a subject and the request has none"
    if task == "storyboard" and request.storyboard is None:
        return "storyboard needs storyboard panels and the request has none"
    if task in ("arrows", "boxes") and request.annotations.is_empty():
        return f"{task} needs arrows or boxes drawn and the request has none"
    if request.video is not None and task not in NEEDS_VIDEO:
        return f"the request has a context video, and {task} does not use one"
    return None


def parse_answer(text: str, request: MVLRequest) -> LLMAnswer:
    """Validate a chat model's answer for this request; raises EnhancerAnswerError naming the problem."""
    try:
        d = json.loads(_first_json_object(text or ""))
    except json.JSONDecodeError as e:
        raise EnhancerAnswerError(f"the answer's JSON does not parse ({e.msg})") from e
    if not isinstance(d, dict):
        raise EnhancerAnswerError("the answer is not a JSON object")
    task, prompt, plan = d.get("task"), d.get("prompt"), d.get("plan", [])
    if not isinstance(task, str) or task.strip() not in TASKS:
        raise EnhancerAnswerError(f"unknown task {task!r}")
    task = task.strip()
    if not isinstance(prompt, str) or not prompt.strip():
        raise EnhancerAnswerError("the answer has no prompt")
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise EnhancerAnswerError(f"the prompt has {len(prompt)} characters (at most {MAX_PROMPT_CHARS})")
    if isinstance(plan, str):
        plan = [plan]
    if not isinstance(plan, list) or not all(isinstance(x, str) for x in plan):
        raise EnhancerAnswerError("the plan is not a list of lines")
    lost = [r for r in request.references() if f"@{r}" not in prompt]
    if lost:
        raise EnhancerAnswerError(f"the prompt lost the reference @{lost[0]}")
    why = task_fits(request, task)
    if why:
        raise EnhancerAnswerError(why)
    return LLMAnswer(task, prompt, [x.strip() for x in plan if x.strip()][:MAX_PLAN_LINES])


class LLMEnhancer:
    """`generate(messages) -> text` is the chat model; `fallback` the rule-based enhancer."""

    def __init__(self, generate: Callable[[list[dict]], str], fallback, name: str = "chat model"):
        self.generate = generate
        self.fallback = fallback
        self.name = name
        self.last_answer: str | None = None  # the raw answer of the last call (for debugging a plan)

    @classmethod
    def from_pretrained(cls, directory: str | Path, fallback=None, serving: str = "transformers",
                        max_new_tokens: int = 256, device: str | None = None) -> "LLMEnhancer":
        name = Path(str(directory)).name or str(directory)
        if fallback is None:
            from .backends.wan import WanPromptEnhancer

            fallback = WanPromptEnhancer()
        if serving == "mii":
            return cls(_mii_generate(str(directory), max_new_tokens), fallback, name)
        if serving != "transformers":
            raise ValueError(f"serving {serving!r}: use transformers or mii")
        return cls(_transformers_generate(str(directory), max_new_tokens, device), fallback, name)

    def enhance(self, request: MVLRequest) -> Enhanced:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_message(request)}]
        try:
            self.last_answer = self.generate(messages)
            ans = parse_answer(self.last_answer, request)
        except EnhancerAnswerError as e:
            out = self.fallback.enhance(request)
            note = f"Enhancer: {self.name}'s answer was not usable ({e}); the rule-based enhancer's plan instead"
            return replace(out, plan=[note, *out.plan])
        plan = [f"Enhancer: {self.name} (LLM)", f"Task: {ans.task.replace('_', ' ')}",
                f"Prompt for the generator: {ans.prompt}", *ans.plan]
        return Enhanced(prompt=ans.prompt, task=ans.task, plan=plan)


def _transformers_generate(directory: str, max_new_tokens: int, device: str | None):
    import torch
    from transformers import pipeline

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipeline("text-generation", model=directory, tokenizer=directory, device=dev,
                    dtype=torch.bfloat16 if dev.startswith("cuda") else torch.float32)

    def generate(messages: list[dict]) -> str:
        out = pipe(messages, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False)
        text = out[0]["generated_text"]
        if isinstance(text, list):  # a chat list: the assistant's turn is last
            text = text[-1].get("content", "")
        return str(text)

    return generate


def _mii_generate(directory: str, max_new_tokens: int):
    """DeepSpeed-MII's pipeline (GPU hosts): imported here only, refused with the reason elsewhere."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("DeepSpeed-MII serving needs a CUDA GPU (its pipeline also needs NCCL), and this host "
                           "has none: use serving='transformers' here, or run on a GPU host with "
                           "pip install -r requirements-gpu.txt")
    try:
        import mii
    except ImportError as e:
        raise RuntimeError("DeepSpeed-MII is not installed: pip install -r requirements-gpu.txt") from e
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    pipe = mii.pipeline(directory)

    def generate(messages: list[dict]) -> str:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(pipe([text], max_new_tokens=max_new_tokens)[0].generated_text)

    return generate

