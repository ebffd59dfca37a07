"""The pipeline the byte-flip scenario runs (a real module: workers run the components' source)."""

import hashlib

from labpipe import PipelineDecorator


@PipelineDecorator.component(return_values=["payload"], cache=True)
def make_payload(kib: int = 512, seed: int = 0):
    import random

    return random.Random(seed).randbytes(kib * 1024)


@PipelineDecorator.component(return_values=["digest"], cache=True)
def digest(payload, bonus: int = 0):
    import hashlib

    return f"{hashlib.sha256(payload).hexdigest()}:{bonus}"


@PipelineDecorator.pipeline(name="flip", project="chaos", version="1")
def flip_pipeline(kib: int = 512, seed: int = 0, bonus: int = 0):
    payload = make_payload(kib, seed)
    seen = digest(payload, bonus=bonus)
    # the logic reads the payload too: a corrupt copy would show here as well as in the step
    return {"step": str(seen), "logic": hashlib.sha256(payload[:]).hexdigest()}
