"""The names `encode.runtime` and `encode.precision` take, torch-free so config can list them in its errors.

`pipeline.encoding.image_runtime` gives each runtime its meaning (how the image tower executes) and `pipeline.encoding.precision`
each precision its (what both towers compute in); config only checks a value against these tuples."""

# encode.precision: fp32, bf16 (CPUs with bf16 instructions, GPUs), fp16 (CUDA GPUs).
PRECISIONS = ("fp32", "bf16", "fp16")
# encode.runtime: how the fp32 image tower executes (its graph builders in pipeline.encoding.image_runtime); outputs agree to 1e-5.
RUNTIMES = ("auto", "torch", "torchscript", "onnxruntime", "compile")
# removed runtimes and the one line that names their replacement
REMOVED_RUNTIMES = {
    "openvino": "it was removed (its tests never ran in CI, and it was no faster than onnxruntime): "
    "use onnxruntime (pip install -e '.[onnx]')"
}
