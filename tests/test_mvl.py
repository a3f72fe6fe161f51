import numpy as np
import pytest

from model.mvl import Annotations, Arrow, Box, MVLRequest, MVLValidationError, Storyboard


def _img(v=10, side=32):
    return np.full((side, side, 3), v, np.uint8)


def full_request() -> MVLRequest:
    rng = np.random.default_rng(0)
    return MVLRequest(
        prompt="@Image_1 walks into @Image_2, @Tigo follows; keep @Video's camera",
        images=[rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), _img(20)],
        subjects={"Tigo": [_img(30), _img(40)]},
        video=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        annotations=Annotations(arrows=[Arrow([(0.1, 0.2), (0.5, 0.5)], ref="@Image_1")],
                                boxes=[Box((0.1, 0.1, 0.4, 0.4), ref="@Tigo", label="goal")]),
        storyboard=Storyboard(panels=[_img(1), _img(2)], captions=["a", "b"]),
        task="image_ref", seed=7, steps=12, guidance=4.5, strength=0.6, preserve=0.2,
    )


def test_json_round_trip_is_exact():
    r = full_request().validate()
    text = r.to_json()
    back = MVLRequest.from_json(text)
    assert back.to_json() == text
    np.testing.assert_array_equal(back.video, r.video)
    np.testing.assert_array_equal(back.images[0], r.images[0])
    assert back.annotations.arrows[0].points == [(0.1, 0.2), (0.5, 0.5)]
    assert back.references() == ["Image_1", "Image_2", "Tigo", "Video"]
    assert back.strength == 0.6 and back.preserve == 0.2


@pytest.mark.parametrize("change, message", [
    (dict(prompt="@Image_3 jumps"), "@Image_3 is used but only 2 images were given"),
    (dict(prompt="@Mira dances"), "@Mira is not in the subject library"),
    (dict(prompt="@image_1 dances"), "references are case-sensitive; did you mean @Image_1"),
    (dict(prompt="@IMAGE_2 dances"), "did you mean @Image_2"),
    (dict(prompt="@tigo in @video"), "@tigo is not a reference: references are case-sensitive; did you mean @Tigo"),
    (dict(prompt="@Tigo in @VIDEO"), "did you mean @Video"),
    (dict(prompt="   "), "the prompt is empty"),
    (dict(video=None), "@Video is used but no context video was given"),
    (dict(images=[_img()] * 9, prompt="x"), "9 reference images given; at most 8"),
    (dict(frames=500), "frames=500 is out of range"),
    (dict(height=30), "height=30 must be a multiple of 8"),
    (dict(task="dance"), "unknown task 'dance'"),
    (dict(annotations=Annotations(arrows=[Arrow([(0.1, 0.2), (1.4, 0.5)])])), "outside the frame"),
    (dict(annotations=Annotations(boxes=[Box((0.5, 0.5, 0.2, 0.9))])), "box 1 is empty"),
    (dict(annotations=Annotations(arrows=[Arrow([(0.1, 0.2), (0.3, 0.5)], ref="@Nobody")])), "bound to @Nobody"),
    (dict(subjects={"Image_1": [_img()]}), "is not usable as a reference"),
    (dict(strength=1.5), r"strength=1.5 is out of range: give a number in \(0, 1\]"),
    (dict(strength=0), "strength=0 is out of range"),
    (dict(strength="half"), "strength='half' is out of range"),
    (dict(prompt="@Tigo jumps", video=None), "strength says how much of @Video an edit may redraw"),
    (dict(preserve=1.0), r"preserve=1.0 is out of range: give a number in \[0, 1\)"),
    (dict(preserve=-0.1), "preserve=-0.1 is out of range"),
    (dict(preserve=True), "preserve=True is out of range"),
    (dict(prompt="@Tigo jumps", video=None, strength=None), "preserve says which pixels of @Video an edit keeps"),
])
def test_validation_names_the_problem(change, message):
    r = full_request()
    for k, v in change.items():
        setattr(r, k, v)
    with pytest.raises(MVLValidationError, match=message):
        r.validate()


def test_malformed_json_is_refused_clearly():
    with pytest.raises(MVLValidationError, match="not valid JSON"):
        MVLRequest.from_json("{prompt: ")
    with pytest.raises(MVLValidationError, match="unknown field"):
        MVLRequest.from_json('{"prompt": "x", "colour": 3}')
    with pytest.raises(MVLValidationError, match="no prompt"):
        MVLRequest.from_json('{"images": []}')


@pytest.mark.parametrize("kind", [float, np.float32, np.float64, np.float16, np.int64, int])
def test_any_real_number_type_passes_validation_and_json(kind):
    """Coordinates and parameters from numpy (the sketch parser, a slider) validate like Python numbers and
    serialise to plain JSON numbers."""
    one = 1 if kind in (int, np.int64) else 0.5
    r = MVLRequest(prompt="the subject follows the arrow", images=[_img()],
                   annotations=Annotations(arrows=[Arrow([(kind(0), kind(0)), (kind(one), kind(one))])],
                                           boxes=[Box((kind(0), kind(0), kind(one), kind(one)))]),
                   frames=np.int64(16), steps=np.int32(5), guidance=np.float32(3.0), seed=np.int64(3)).validate()
    back = MVLRequest.from_json(r.to_json()).validate()
    assert back.annotations.arrows[0].points[1] == (float(one), float(one))
    assert type(back.frames) is int and back.guidance == 3.0


@pytest.mark.parametrize("bad, message", [
    (np.float32(1.5), "outside the frame"), (float("nan"), "a point is two numbers"), (True, "a point is two numbers"),
    ("0.5", "a point is two numbers")])
def test_a_bad_coordinate_is_refused_whatever_its_type(bad, message):
    r = MVLRequest(prompt="x", annotations=Annotations(arrows=[Arrow([(0.1, 0.1), (bad, 0.2)])]))
    with pytest.raises(MVLValidationError, match=message):
        r.validate()
