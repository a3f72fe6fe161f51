"""OmniWorld: the procedural world the embedded model learns from and is measured in.

- `vocab`: every attribute (colours, shapes, patterns, backgrounds, motions, camera,
  weather, styles, materials, effects, named subjects) and the held-out split;
- `render`: scene -> exact clip + masks, at the base 32x32 or any multiple (SR targets);
- `families`: one sampler per task family -> WorldSample(request, target, truth);
- `perceive`: reads attributes back off any clip (OmniBench, the judge, the data filter);
- `preview`: contact sheets (`python -m training.world preview --family F --out sheet.png`).
"""

from .families import FAMILIES, SAMPLERS, Truth, WorldSample, sample
from .render import BASE, FRAMES, Scene, SubjectSpec, render

__all__ = ["FAMILIES", "SAMPLERS", "Truth", "WorldSample", "sample", "BASE", "FRAMES", "Scene",
           "SubjectSpec", "render"]
