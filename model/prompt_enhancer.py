"""The prompt enhancer (Kling-Omni's PE): free text in, the words the generator knows out.

- `@Name` library references become `@Subject_k` (k = order in the request's library),
  the slot the generator's subject tokens carry;
- world knowledge and simple reasoning ("the colour of a ripe banana", "a shape with
  three corners", "heads west") are resolved into attributes;
- synonyms map onto the canonical vocabulary: a table first, then MiniLM similarity for
  words the table does not know ("crimson" -> red);
- the task family is inferred from the request when it is not given (a context video +
  "make it snow" is a weather edit);
- a readable plan says what will be generated.

`PromptEnhancer` is the interface; `RuleEnhancer` implements it with the vocabulary the
model was trained on (stored in the model directory), and a local transformers chat model
can implement it later with the same `enhance(request) -> Enhanced`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from .layout import CAMERA_PHRASES, LayoutPlan, LayoutPlanner
from .mvl import IMAGE_REF_RE, REFERENCE_RE, TASKS, MVLRequest


@dataclass
class Enhanced:
    prompt: str  # what the generator reads
    task: str
    plan: list[str]
    resolved: dict[str, str] = field(default_factory=dict)  # original words -> canonical
    layout: LayoutPlan | None = None  # a box per frame for every subject (model/layout.py); None = not planned


class PromptEnhancer(Protocol):
    def enhance(self, request: MVLRequest) -> Enhanced: ...


@dataclass
class Vocabulary:
    """What the model knows, stored with it (enhancer/config.json)."""

    colors: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    motions: dict[str, str] = field(default_factory=dict)  # name -> phrase ("left" -> "moves left")
    backgrounds: dict[str, str] = field(default_factory=dict)  # name -> phrase
    weather: dict[str, str] = field(default_factory=dict)
    styles: dict[str, str] = field(default_factory=dict)
    materials: list[str] = field(default_factory=list)
    effects: dict[str, str] = field(default_factory=dict)
    knowledge_colors: dict[str, str] = field(default_factory=dict)
    knowledge_shapes: dict[str, str] = field(default_factory=dict)
    knowledge_motions: dict[str, str] = field(default_factory=dict)
    synonyms: dict[str, str] = field(default_factory=dict)  # word -> canonical word or phrase
    # what the layout planner knows of the world (model/layout.py): colours as RGB 0..1, subject sizes
    # in frame px, and the motion / camera parameters the world's tracks follow
    palette: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, float] = field(default_factory=dict)
    motion_params: dict[str, float] = field(default_factory=dict)

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"_class": "RuleEnhancer", **asdict(self)}, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "Vocabulary":
        raw = json.loads((Path(directory) / "config.json").read_text())
        raw.pop("_class", None)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


DEFAULT_SYNONYMS = {
    "crimson": "red", "scarlet": "red", "ruby": "red", "cherry": "red",
    "tangerine": "orange", "amber": "orange", "apricot": "orange",
    "golden": "yellow", "lemon": "yellow", "canary": "yellow",
    "emerald": "green", "lime": "green", "olive": "green",
    "turquoise": "cyan", "teal": "cyan", "aqua": "cyan",
    "azure": "blue", "cobalt": "blue", "sapphire": "blue", "navy": "blue",
    "violet": "purple", "lilac": "purple", "lavender": "purple", "indigo": "purple",
    "magenta": "pink", "rose": "pink", "fuchsia": "pink", "salmon": "pink",
    "ball": "circle", "disc": "circle", "disk": "circle", "orb": "circle", "round": "circle",
    "cube": "square", "block": "square", "crate": "square",
    "pyramid": "triangle", "wedge": "triangle", "rhombus": "diamond", "gem": "diamond",
    "plus": "cross", "hill": "dome", "arch": "dome", "igloo": "dome",
    "stripy": "striped", "stripes": "striped", "banded": "striped",
    "checked": "checkered", "chequered": "checkered", "plaid": "checkered",
    "grass": "meadow", "field": "meadow", "lawn": "meadow", "beach": "ocean", "sea": "ocean",
    "sand": "desert", "dunes": "desert",
}
TASK_WORDS = [  # (regex on a lower-cased clause, task) for requests with a context video, by priority
    (r"\bremove\b|\berase\b|\bdelete\b|\btake out\b", "edit_remove"),
    (r"\breplace the (green screen|background)\b|\bnew background\b|\bbackground of\b|\bmove the scene\b", "background"),
    (r"\brain\b|\bsnow\b|\bfog\b|\blightning\b|\bsunset\b|\bstorm\b", "weather"),
    (r"\bstyle\b|\brestyle\b|\blook like\b|\bsepia\b|\bneon\b|\bpixel art\b|\bsketch\b|\bblack and white\b", "stylize"),
    (r"\binto (solid )?(glass|gold|ice|stone)\b|\bmade of\b", "material"),
    (r"\bglow\b|\bfire\b|\bfrost\b|\bsparkles?\b|\bflames?\b", "effects"),
    (r"\breplace\b|\bswap\b", "edit_replace"),
    (r"\badd\b|\binsert\b", "edit_add"),
    (r"\bmoves? like\b|\bsame motion\b|\bcopy the motion\b", "motion_transfer"),
    (r"\bcamera motion\b|\bcamera move\b", "camera_transfer"),
    (r"\bnext shot\b|\bwhat happens next\b|\bafter @video\b", "next_shot"),
    (r"\bshot before\b|\bprevious shot\b|\bbefore @video\b", "previous_shot"),
]
MOTION_KEYWORDS = [  # (regex, motion name) for free-form verbs, most specific first
    (r"\b(jump|jumps|jumping|hop|hops|hopping|bounce|bounces|bouncing)\b", "jump"),
    (r"\b(circle|circles|circling|orbit|orbits|spins? around)\b.*\b(around|in a circle)\b|\bin a circle\b", "circle"),
    (r"\bup and (to the )?right\b|\bup-right\b|\bnorth-?east\b", "up_right"),
    (r"\bdown and (to the )?left\b|\bdown-left\b|\bsouth-?west\b", "down_left"),
    (r"\b(moves?|goes|walks?|runs?|slides?|rolls?|drifts?|travels?|heads?) (to the )?left\b|\bwestwards?\b", "left"),
    (r"\b(moves?|goes|walks?|runs?|slides?|rolls?|drifts?|travels?|heads?) (to the )?right\b|\beastwards?\b", "right"),
    (r"\b(rises?|climbs?|floats? up|flies up|moves? up|goes up)\b", "up"),
    (r"\b(falls?|drops?|sinks?|moves? down|goes down)\b", "down"),
    (r"\b(stays? still|sits?|stands? still|rests?|waits?|does not move)\b", "still"),
]
EDIT_TASKS = ("edit_remove", "background", "edit_replace", "edit_add", "stylize", "weather", "material", "effects")


class RuleEnhancer:
    def __init__(self, vocab: Vocabulary, text_encoder=None, similarity: float = 0.55):
        self.vocab = vocab
        self.encoder = text_encoder  # anything with sentence_embedding(list[str]) -> (N, D)
        self.similarity = similarity
        self.synonyms = {**DEFAULT_SYNONYMS, **vocab.synonyms}
        self.known = set(vocab.colors) | set(vocab.shapes) | set(vocab.patterns)
        self._canon_vecs = None
        self.planner = LayoutPlanner(vocab) if vocab.palette else None  # older vocabularies carry no palette

    # ------------------------------------------------------------ steps
    def _subjects(self, text: str, request: MVLRequest, resolved: dict) -> str:
        names = list(request.subjects)

        def sub(m):
            name = m.group(1)
            if name in names:
                new = f"@Subject_{names.index(name) + 1}"
                resolved["@" + name] = new
                return new
            return m.group(0)

        return REFERENCE_RE.sub(sub, text)

    def _knowledge(self, text: str, resolved: dict) -> str:
        v = self.vocab
        for table in (v.knowledge_colors, v.knowledge_shapes):
            for phrase, word in sorted(table.items(), key=lambda kv: -len(kv[0])):
                pat = re.compile(re.escape(phrase), re.IGNORECASE)
                if pat.search(text):
                    text = pat.sub(word, text)
                    resolved[phrase] = word
        for phrase, motion in sorted(v.knowledge_motions.items(), key=lambda kv: -len(kv[0])):
            pat = re.compile(r"\b" + re.escape(phrase) + r"\b", re.IGNORECASE)
            if pat.search(text):
                text = pat.sub(v.motions.get(motion, motion), text)
                resolved[phrase] = v.motions.get(motion, motion)
        return text

    def _synonyms(self, text: str, resolved: dict) -> str:
        def sub(m):
            w = m.group(0)
            canon = self.synonyms.get(w.lower())
            if canon is None:
                return w
            resolved[w] = canon
            return canon

        return re.sub(r"\b[A-Za-z]+\b", sub, text)

    def _nearest(self, text: str, resolved: dict) -> str:
        """Unknown words right before a known shape (or right after an article, before a colour)
        are mapped to the nearest colour / shape by MiniLM similarity."""
        if self.encoder is None:
            return text
        words = re.findall(r"[A-Za-z]+", text)
        cands = [w for i, w in enumerate(words)
                 if w.lower() not in self.known and w.lower() not in _STOP and len(w) > 2
                 and i + 1 < len(words) and words[i + 1].lower() in self.known]
        if not cands:
            return text
        canon = list(self.vocab.colors) + list(self.vocab.shapes)
        if self._canon_vecs is None:
            self._canon_vecs = self.encoder.sentence_embedding(canon)
        vecs = self.encoder.sentence_embedding([c.lower() for c in cands])
        sims = vecs @ self._canon_vecs.T
        for w, row in zip(cands, sims):
            j = int(row.argmax())
            if float(row[j]) >= self.similarity:
                text = re.sub(r"\b" + re.escape(w) + r"\b", canon[j], text)
                resolved[w] = canon[j]
        return text

    def _canonical_description(self, text: str) -> str | None:
        """One subject described in any order -> 'A {pattern} {colour} {shape} {motion} {place}.'"""
        low = text.lower()
        v = self.vocab
        colors = [c for c in v.colors if re.search(rf"\b{c}\b", low)]
        shapes = [s for s in v.shapes if re.search(rf"\b{s}\b", low)]
        if len(colors) != 1 or len(shapes) != 1:
            return None
        pattern = next((p for p in v.patterns if p != "plain" and re.search(rf"\b{p}\b", low)), None)
        motion = next((ph for _, ph in sorted(v.motions.items(), key=lambda kv: -len(kv[1])) if ph in low), None)
        if motion is None:
            name = next((m for pat, m in MOTION_KEYWORDS if re.search(pat, low)), None)
            motion = v.motions.get(name) if name else None
        place = next((ph for _, ph in v.backgrounds.items() if ph in low), None)
        if place is None:
            name = next((b for b in v.backgrounds if re.search(rf"\b{b}\b", low)), None)
            place = v.backgrounds.get(name) if name else None
        parts = ["A", *([pattern] if pattern else []), colors[0], shapes[0]]
        if motion:
            parts.append(motion)
        s = " ".join(parts)
        if place:
            s += " " + place
        return s + "."

    def infer_task(self, request: MVLRequest, text: str) -> str:
        low = text.lower()
        if request.task:
            return request.task
        if request.storyboard is not None:
            return "storyboard"
        if request.annotations.arrows:
            return "arrows"
        if request.annotations.boxes:
            return "boxes"
        if request.video is not None:
            # each clause of the instruction is one operation; two different edits make a combined edit
            hits = []
            for clause in re.split(r",|;|\band\b", low):
                task = next((t for pat, t in TASK_WORDS if re.search(pat, clause)), None)
                if task and task not in hits:
                    hits.append(task)
            if len([h for h in hits if h in EDIT_TASKS]) >= 2:
                return "combined"
            return hits[0] if hits else "edit_replace"
        if request.subjects:
            return "novel_view" if re.search(r"\bfacing\b|\bfrom behind\b|\bseen from\b|\bturn(s|ed)? around\b", low) \
                else "subject_ref"
        if request.images:
            if "sketch" in low:
                return "sketch"
            if re.search(r"\blargest\b|\bsmallest\b|\bbiggest\b|\btiniest\b", low):
                return "reasoning"
            refs = [r for r in request.references() if IMAGE_REF_RE.match(r)]
            if len(request.images) == 1 and re.match(r"\s*@image_1\s*:", low):
                return "i2v"
            return "image_ref" if refs else "i2v"
        return "t2v"

    def enhance(self, request: MVLRequest) -> Enhanced:
        resolved: dict[str, str] = {}
        text = self._subjects(request.prompt, request, resolved)
        before = text
        text = self._knowledge(text, resolved)
        reasoned = text != before
        text = self._synonyms(text, resolved)
        text = self._nearest(text, resolved)
        task = self.infer_task(request, text)
        if task not in TASKS:
            task = "t2v"
        media = request.images or request.subjects or request.video is not None or request.storyboard is not None
        if (reasoned or resolved) and not media:
            canon = self._canonical_description(text)
            if canon:
                text = canon
        if reasoned and task == "t2v":
            task = "reasoning"
        layout = self.planner.plan(request, text, task, seed=request.seed) if self.planner else None
        if task == "motion_transfer" and layout is not None and layout.subjects:
            text = self._name_transferred_motion(text, layout.subjects[0].motion, resolved)
        if task == "camera_transfer" and layout is not None:
            text = self._name_transferred_camera(text, layout, resolved)
        lines = self.plan(request, text, task, resolved) + (layout.describe() if layout is not None else [])
        return Enhanced(prompt=text, task=task, plan=lines, resolved=resolved, layout=layout)

    def _name_transferred_motion(self, text: str, motion: str, resolved: dict) -> str:
        """'moves like the subject in @Video' -> the motion the planner read off @Video, in the world's words
        ('moves left'), so the generator reads the words it was trained on; a free path keeps the words."""
        phrase = self.vocab.motions.get(motion)
        m = re.search(r"\bmoves? like [^.;]*?@video\b", text, re.IGNORECASE)
        if phrase is None or m is None:
            return text
        resolved[m.group(0)] = phrase
        return text[:m.start()] + phrase + text[m.end():]

    def _name_transferred_camera(self, text: str, layout, resolved: dict) -> str:
        """'@Image_1 filmed with the camera motion of @Video.' -> what the planner read: '@Image_1: the red circle
        stays still, the camera pans left.' (the world's words for an animated first frame)."""
        m = re.search(r"\s*(?:filmed|shot) with the camera (?:motion|movement) of @video\b", text, re.IGNORECASE)
        if m is None:
            return text
        still = self.vocab.motions.get("still", "stays still")
        parts = [f"{s.label} {still}" for s in layout.subjects]
        words = (", ".join(parts[:-1]) + " and " + parts[-1]) if len(parts) > 1 else (parts[0] if parts else "")
        camera = CAMERA_PHRASES.get(layout.camera, "")
        new = ": " + ", ".join(w for w in (words, camera) if w)
        resolved[m.group(0).strip()] = new[2:]
        return text[:m.start()] + new + text[m.end():]

    def plan(self, request: MVLRequest, text: str, task: str, resolved: dict) -> list[str]:
        lines = [f"Task: {task.replace('_', ' ')}", f"Prompt for the generator: {text}"]
        for k, v in resolved.items():
            lines.append(f"Understood '{k}' as '{v}'")
        if request.images:
            lines.append(f"Reference images: {len(request.images)}")
        for k, (name, views) in enumerate(request.subjects.items(), 1):
            lines.append(f"@{name} = @Subject_{k}, {len(views)} view(s)")
        if request.video is not None:
            lines.append("Context video: @Video")
        for k, a in enumerate(request.annotations.arrows, 1):
            (x0, y0), (x1, y1) = a.points[0], a.points[-1]
            lines.append(f"Arrow {k}: from ({x0:.2f}, {y0:.2f}) to ({x1:.2f}, {y1:.2f})"
                         + (f", bound to {a.ref}" if a.ref else ""))
        for k, b in enumerate(request.annotations.boxes, 1):
            lines.append(f"Box {k}: ({', '.join(f'{v:.2f}' for v in b.box)})" + (f", bound to {b.ref}" if b.ref else ""))
        if request.storyboard is not None:
            sb = request.storyboard
            lines.append(f"Storyboard: {len(sb.panels)} panels" if sb.panels else f"Storyboard grid {sb.rows}x{sb.cols}")
        lines.append(f"Output: {request.frames} frames at {request.width}x{request.height}, {request.steps} steps, "
                     f"seed {request.seed}")
        return lines


_STOP = {"the", "and", "with", "into", "from", "that", "this", "then", "its", "it", "moves", "move", "stays", "still",
         "left", "right", "up", "down", "jumps", "circle", "image", "video", "subject", "shot", "make", "turn", "add",
         "remove", "replace", "thing", "shape", "one", "while", "front", "camera"}
