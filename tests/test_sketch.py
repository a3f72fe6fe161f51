import numpy as np
from PIL import Image, ImageDraw

from studio_backend.sketch import parse_sketch, describe
from training.world.render import Scene, SubjectSpec, render


def _frame():
    s = SubjectSpec("circle", "blue", "plain", track=np.float32([[8.0, 16.0]]))
    return np.asarray(Image.fromarray(render(Scene("studio", [s], frames=1)).clip[0]).resize((256, 256), Image.NEAREST))


def _layer(draw_fn):
    im = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(im))
    return np.asarray(im)


def test_arrow_direction_binding_and_box():
    frame = _frame()

    def draw(d):
        d.line([(64, 128), (200, 100)], fill=(230, 30, 30, 255), width=6)  # tail on the blue subject
        d.line([(200, 100), (180, 85)], fill=(230, 30, 30, 255), width=6)  # the head at (200, 100)
        d.line([(200, 100), (183, 115)], fill=(230, 30, 30, 255), width=6)
        d.rectangle([150, 170, 230, 240], outline=(240, 220, 20, 255), width=5)

    arrows, boxes = parse_sketch(frame, [_layer(draw)])
    assert len(arrows) == 1 and len(boxes) == 1
    a = arrows[0]
    assert a.points[0][0] < 0.35 and a.points[-1][0] > 0.7  # tail left, head right
    assert a.bound_to == "blue"
    x0, y0, x1, y1 = boxes[0].box
    assert abs(x0 - 150 / 256) < 0.02 and abs(y1 - 241 / 256) < 0.02 and boxes[0].bound_to is None
    text = describe(arrows, boxes)
    assert "heading up and right" in text[0] and "blue subject" in text[0]


def test_reversed_arrow_reads_the_other_way():
    frame = _frame()

    def draw(d):
        d.line([(64, 200), (200, 200)], fill=(230, 30, 30, 255), width=6)
        d.line([(64, 200), (84, 185)], fill=(230, 30, 30, 255), width=6)  # head at the left end
        d.line([(64, 200), (84, 215)], fill=(230, 30, 30, 255), width=6)

    arrows, _ = parse_sketch(frame, [_layer(draw)])
    assert arrows[0].points[0][0] > arrows[0].points[-1][0]


def test_empty_drawing_is_explained():
    arrows, boxes = parse_sketch(_frame(), [np.zeros((256, 256, 4), np.uint8)])
    assert (arrows, boxes) == ([], []) and "Nothing drawn" in describe([], [])[0]
