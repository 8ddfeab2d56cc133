"""Checks a kvcc artifact directory with the reference ONNX implementation (PyPI onnx).

Usage: check_onnx.py ARTIFACT_DIR

Runs onnx.checker.check_model on the model path (so external data is resolved against the
directory), then asserts what kvcc promises beyond the checker: the ai.kvcc opset, every node
in that domain, every initializer as external data in model.weights at a 64-byte aligned offset
with the byte length its dtype and shape need, and the weights loadable through onnx itself.
Exits non-zero with a message on the first violation.
"""
import os
import sys

import onnx
from onnx import TensorProto

KVCC_DOMAIN = "ai.kvcc"
WEIGHTS = "model.weights"
ALIGNMENT = 64
# Bits per element of the elem_types kvcc writes.
BITS = {
    TensorProto.FLOAT: 32,
    TensorProto.UINT8: 8,
    TensorProto.INT8: 8,
    TensorProto.INT32: 32,
    TensorProto.FLOAT16: 16,
    TensorProto.BFLOAT16: 16,
    TensorProto.FLOAT8E4M3FN: 8,
    TensorProto.INT4: 4,
}


def fail(message):
    print(f"check_onnx: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail("usage: check_onnx.py ARTIFACT_DIR")
    artifact = sys.argv[1]
    model_path = os.path.join(artifact, "model.onnx")
    weights_path = os.path.join(artifact, WEIGHTS)

    try:
        onnx.checker.check_model(model_path, full_check=False)
    except onnx.checker.ValidationError as e:
        fail(f"onnx.checker rejected {model_path}: {e}")

    model = onnx.load(model_path, load_external_data=False)
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get(KVCC_DOMAIN) != 1:
        fail(f"opset_import has no {KVCC_DOMAIN} version 1: {opsets}")
    if "" not in opsets:
        fail(f"opset_import lacks the default domain: {opsets}")
    if model.producer_name != "kvcc":
        fail(f"producer_name is {model.producer_name!r}")
    props = {p.key: p.value for p in model.metadata_props}
    if "kvcc.config" not in props:
        fail("metadata_props has no kvcc.config")
    if not model.graph.node:
        fail("graph has no nodes")
    for node in model.graph.node:
        if node.domain != KVCC_DOMAIN:
            fail(f"node {node.name!r} is in domain {node.domain!r}")

    file_size = os.path.getsize(weights_path)
    with open(weights_path, "rb") as f:
        blob = f.read()
    expected = {}
    for tensor in model.graph.initializer:
        name = tensor.name
        if tensor.data_location != TensorProto.EXTERNAL:
            fail(f"initializer {name!r} is not external data")
        ext = {e.key: e.value for e in tensor.external_data}
        if ext.get("location") != WEIGHTS:
            fail(f"initializer {name!r} location is {ext.get('location')!r}, not {WEIGHTS}")
        offset, length = int(ext["offset"]), int(ext["length"])
        if offset % ALIGNMENT:
            fail(f"initializer {name!r} offset {offset} is not {ALIGNMENT}-byte aligned")
        if tensor.data_type not in BITS:
            fail(f"initializer {name!r} has elem_type {tensor.data_type}")
        count = 1
        for d in tensor.dims:
            count *= d
        want = (count * BITS[tensor.data_type] + 7) // 8
        if length != want:
            fail(f"initializer {name!r} length {length}, dtype and shape need {want}")
        if offset + length > file_size:
            fail(f"initializer {name!r} ends past {WEIGHTS} ({file_size} bytes)")
        expected[name] = blob[offset:offset + length]

    # onnx's own external-data loader must find the same bytes.
    loaded = onnx.load(model_path, load_external_data=True)
    for tensor in loaded.graph.initializer:
        if tensor.raw_data != expected[tensor.name]:
            fail(f"onnx loaded different bytes for {tensor.name!r}")
    print(f"check_onnx: {model_path} OK ({len(model.graph.node)} nodes, "
          f"{len(expected)} initializers, onnx {onnx.__version__})")


if __name__ == "__main__":
    main()
