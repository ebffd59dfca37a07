"""Components whose outputs are file blobs (over the inline limit), for the blob-healing tests."""

from labpipe import PipelineDecorator


@PipelineDecorator.component(return_values=["payload"], cache=True)
def make_payload(kib: int = 256, salt: str = ""):
    return bytes(range(256)) * (4 * kib)


@PipelineDecorator.component(return_values=["size"], cache=True)
def measure(payload, bonus: int = 0):
    # a wrong byte would show here: the payload is a fixed pattern
    assert payload == bytes(range(256)) * (len(payload) // 256), "corrupt payload served"
    return len(payload) + bonus


@PipelineDecorator.pipeline(name="payload", project="tests", version="1")
def payload_pipeline(kib: int = 256, bonus: int = 0):
    return int(measure(make_payload(kib), bonus=bonus))


@PipelineDecorator.pipeline(name="payload direct", project="tests", version="1")
def payload_direct(kib: int = 256):
    return len(make_payload(kib))


@PipelineDecorator.component(return_values=["size"], cache=True)
def measure_all(payloads, bonus: int = 0):
    return sum(len(p) for p in payloads) + bonus


@PipelineDecorator.pipeline(name="payload nested", project="tests", version="1")
def payload_nested(kib: int = 256, bonus: int = 0):
    # a proxy inside a list is loaded by the scheduler itself when it launches measure_all
    return int(measure_all([make_payload(kib)], bonus=bonus))
