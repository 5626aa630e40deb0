"""The noise kinds `pipeline.method.perturb` draws (train.noise, fewshot.noise, partial.image_noise), torch-free so config
can list them in its errors; what each one is, is written beside its code in perturb."""

NOISE_KINDS = ("surface", "interior", "ball")
