"""Training and evaluation of the embedded Omni model: the OmniWorld data engine
(`training.world`), OmniBench (`training.evaluate`), the three-tier data filter
(`training.data_filter`) and, later, pretraining, SFT, DPO and distillation.
Imports `model`, never `app`."""
