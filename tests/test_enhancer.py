import numpy as np
import pytest

from model.mvl import MVLRequest
from model.prompt_enhancer import RuleEnhancer
from model.text_encoder import MiniLMTextEncoder
from training.world import FAMILIES, sample
from training.world.vocab import enhancer_vocabulary


@pytest.fixture(scope="module")
def enhancer():
    return RuleEnhancer(enhancer_vocabulary(), MiniLMTextEncoder())


def test_synonyms_and_minilm_similarity(enhancer):
    e = enhancer.enhance(MVLRequest(prompt="A crimson ball hops on the grass."))
    assert e.prompt == "A red circle jumps up and down on a meadow."
    assert e.resolved["crimson"] == "red" and e.resolved["ball"] == "circle"
    # a word in no table, resolved by MiniLM similarity to the canonical colours
    e = enhancer.enhance(MVLRequest(prompt="A bluish square moves left in a grey studio."))
    assert e.prompt == "A blue square moves left in a grey studio." and e.resolved.get("bluish") == "blue"


def test_references_become_subject_slots(enhancer):
    img = np.zeros((32, 32, 3), np.uint8)
    r = MVLRequest(prompt="@Tigo chases @Blip on a meadow", subjects={"Blip": [img], "Tigo": [img]})
    e = enhancer.enhance(r)
    assert e.prompt.startswith("@Subject_2 chases @Subject_1") and e.task == "subject_ref"
    assert any("@Tigo = @Subject_2" in line for line in e.plan)


def test_reasoning_is_resolved_into_attributes(enhancer):
    e = enhancer.enhance(MVLRequest(prompt="Something in the colour of a ripe banana, a shape with three corners, "
                                           "that heads west in the desert."))
    assert e.prompt == "A yellow triangle moves left in the desert." and e.task == "reasoning"


@pytest.mark.parametrize("prompt, task", [
    ("Make it snow in @Video.", "weather"),
    ("Remove the red circle from @Video.", "edit_remove"),
    ("Replace the background of @Video with a brick wall.", "background"),
    ("In @Video, make it rain and turn the red circle into gold.", "combined"),
    ("The next shot after @Video: the subject turns around.", "next_shot"),
])
def test_task_inferred_from_a_context_video(enhancer, prompt, task):
    v = np.zeros((16, 32, 32, 3), np.uint8)
    assert enhancer.enhance(MVLRequest(prompt=prompt, video=v)).task == task


def test_task_inferred_for_every_world_family(enhancer):
    wrong = []
    for f in FAMILIES:
        for k in range(6):
            r = sample(f, k).request
            r.task = None
            got = enhancer.enhance(r).task
            if got != f:
                wrong.append((f, got, r.prompt))
    assert not wrong, wrong[:5]
