"""Writes one-operator ``.tflite`` flatbuffers with the ``tflite`` package's builder functions, for interpreter tests."""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite
from tflite import BuiltinOperator, BuiltinOptions, TensorType

_TYPES = {np.dtype(np.float32): TensorType.FLOAT32, np.dtype(np.float16): TensorType.FLOAT16}


def _ints(builder: flatbuffers.Builder, values) -> int:
    return builder.CreateNumpyVector(np.asarray(values, np.int32))


def _table_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def build_model(
    op: str, weight: np.ndarray | None, bias: np.ndarray | None, input_shape: tuple[int, ...]
) -> bytes:
    """A model with one operator.

    ``op="CONV_2D"``: fp16 ``weight`` [O, 3, 3, I] -> DEQUANTIZE -> CONV_2D (stride 2, SAME, fused ReLU, float32
    ``bias`` [O]) on a float32 NHWC input. Any other ``op`` name: that op applied to the input, shape unchanged.
    """
    b = flatbuffers.Builder(1024)
    buffers = [b""]  # buffer 0 is the empty buffer by convention
    tensors: list[tuple[str, tuple[int, ...], int, int]] = []  # name, shape, type, buffer index

    def tensor(name: str, shape: tuple[int, ...], data: np.ndarray | None = None, dtype=np.float32) -> int:
        buffer = 0
        if data is not None:
            buffers.append(data.tobytes())
            buffer, dtype = len(buffers) - 1, data.dtype
        tensors.append((name, tuple(shape), _TYPES[np.dtype(dtype)], buffer))
        return len(tensors) - 1

    x = tensor("input", input_shape)
    operators = []  # (opcode, inputs, outputs, options type, options builder)
    if op == "CONV_2D":
        w16 = tensor("weight_fp16", weight.shape, weight)
        w32 = tensor("weight", weight.shape)
        bb = tensor("bias", bias.shape, bias)
        n, h, w, _ = input_shape
        y = tensor("output", (n, -(-h // 2), -(-w // 2), weight.shape[0]))

        def conv_options() -> int:
            tflite.Conv2DOptionsStart(b)
            tflite.Conv2DOptionsAddPadding(b, 0)  # SAME
            tflite.Conv2DOptionsAddStrideW(b, 2)
            tflite.Conv2DOptionsAddStrideH(b, 2)
            tflite.Conv2DOptionsAddFusedActivationFunction(b, 1)  # RELU
            return tflite.Conv2DOptionsEnd(b)

        operators.append(("DEQUANTIZE", [w16], [w32], None, None))
        operators.append(("CONV_2D", [x, w32, bb], [y], BuiltinOptions.Conv2DOptions, conv_options))
    else:
        y = tensor("output", input_shape)
        operators.append((op, [x], [y], None, None))

    names = [name for name, *_ in operators]
    codes = sorted(set(names), key=names.index)
    code_offsets = []
    for name in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, getattr(BuiltinOperator, name))
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(getattr(BuiltinOperator, name), 127))
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))
    op_offsets = []
    for name, ins, outs, options_type, options in operators:
        options_offset = options() if options else None
        ins_vec, outs_vec = _ints(b, ins), _ints(b, outs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(name))
        tflite.OperatorAddInputs(b, ins_vec)
        tflite.OperatorAddOutputs(b, outs_vec)
        if options_offset is not None:
            tflite.OperatorAddBuiltinOptionsType(b, options_type)
            tflite.OperatorAddBuiltinOptions(b, options_offset)
        op_offsets.append(tflite.OperatorEnd(b))
    tensor_offsets = []
    for name, shape, dtype, buffer in tensors:
        name_off, shape_vec = b.CreateString(name), _ints(b, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_vec)
        tflite.TensorAddType(b, dtype)
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name_off)
        tensor_offsets.append(tflite.TensorEnd(b))
    buffer_offsets = []
    for data in buffers:
        data_vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        tflite.BufferStart(b)
        if data_vec is not None:
            tflite.BufferAddData(b, data_vec)
        buffer_offsets.append(tflite.BufferEnd(b))

    tensors_vec, ops_vec = _table_vector(b, tensor_offsets), _table_vector(b, op_offsets)
    inputs_vec, outputs_vec = _ints(b, [x]), _ints(b, [y])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    subgraph = tflite.SubGraphEnd(b)
    codes_vec, subgraphs_vec = _table_vector(b, code_offsets), _table_vector(b, [subgraph])
    buffers_vec = _table_vector(b, buffer_offsets)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddBuffers(b, buffers_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
