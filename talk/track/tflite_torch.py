"""A small pure-torch interpreter of float TFLite graphs: MediaPipe's BlazeFace detector and FaceMesh landmarker.

The ``.tflite`` flatbuffer is parsed with the pure-Python ``tflite`` schema package (imported lazily) and rebuilt
op by op as an ``nn.Module``: constant weights become buffers (fp16 constants are dequantized to float32 once),
and ``forward`` replays the operators in graph order with torch functions. No TFLite runtime and no native code
is needed, the batch dimension is free (the graph's batch of 1 is not enforced), and the result equals the
LiteRT runtime to about 1e-4.

Only the ops of those two graphs are supported (:data:`SUPPORTED_OPS`); a graph with any other op, or with
quantized activations, is rejected at load time by :class:`TFLiteGraphError` naming the op. Activations are
kept NCHW inside the module (torch's native layout); the TFLite NHWC layout is restored only where it is
observable: at RESHAPE, CONCATENATION axes, and the graph outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talk.errors import UserError

__all__ = ["SUPPORTED_OPS", "TFLiteGraph", "TFLiteGraphError", "TrackDependencyError", "import_tflite"]

INSTALL_HINT = 'pip install "talk[track]" && pip install --no-deps mediapipe==0.10.21'

SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "RELU",
    "PRELU",
    "ADD",
    "PAD",
    "MAX_POOL_2D",
    "RESHAPE",
    "CONCATENATION",
    "DEQUANTIZE",
)
# tflite.TensorType codes of the constants we read, and tflite.ActivationFunctionType codes we apply.
_CONST_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}
_FLOAT32 = 0
_ACTIVATIONS = {0: "NONE", 1: "RELU", 3: "RELU6"}
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class TrackDependencyError(UserError, ImportError):
    """The ``tflite`` flatbuffer reader is not installed; the message gives the install line."""


class TFLiteGraphError(UserError, ValueError):
    """A ``.tflite`` file cannot be run by this interpreter (unsupported op, quantized tensors, bad file)."""


def import_tflite() -> ModuleType:
    """Import the ``tflite`` schema package, or raise :class:`TrackDependencyError` with the install line."""
    try:
        import tflite
    except ImportError as err:
        raise TrackDependencyError(
            f"face tracking needs the `tflite` flatbuffer reader and MediaPipe's model files: {INSTALL_HINT} ({err})"
        ) from err
    return tflite


@dataclass(frozen=True)
class _Op:
    """One compiled operator: its kind, the tensor ids it reads and writes, and static parameters."""

    kind: str
    inputs: tuple[int, ...]
    output: int
    params: dict[str, Any] = field(default_factory=dict)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: the odd pixel goes after (bottom/right), unlike torch's symmetric padding."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFLiteGraph(nn.Module):
    """A TFLite graph of :data:`SUPPORTED_OPS` as an ``nn.Module`` in eval mode, inference only.

    Args:
        path: The ``.tflite`` file (one subgraph, one input, float32 activations).

    Attributes:
        input_shape: The input's ``(H, W, C)`` (NHWC without the batch).
        output_names: Tensor names of the outputs, in the order ``forward`` returns them.
        output_shapes: Their shapes without the batch dimension.

    Raises:
        TrackDependencyError: the ``tflite`` package is missing.
        TFLiteGraphError: the file is not a TFLite model, or uses an op or tensor type outside this interpreter.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        tflite = import_tflite()
        name = Path(path).name
        try:
            model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
            graph = model.Subgraphs(0)
            self._parse(tflite, model, graph, name)
        except TFLiteGraphError:
            raise
        except Exception as err:  # flatbuffers raises bare struct/index errors on a corrupt file
            raise TFLiteGraphError(
                f"{path} is not a readable TFLite model ({type(err).__name__}: {err})."
            ) from err
        self.eval()

    def _parse(self, tflite: ModuleType, model: Any, graph: Any, name: str) -> None:
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            # Codes below 127 live in the deprecated int8 field, newer ones in the int32 field.
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            codes.append(names.get(code, str(code)) if code != 32 else f"CUSTOM:{oc.CustomCode().decode()}")
        if graph.InputsLength() != 1:
            raise TFLiteGraphError(
                f"{name} has {graph.InputsLength()} inputs; only single-input graphs are supported."
            )
        tensors = [graph.Tensors(t) for t in range(graph.TensorsLength())]
        shapes = [tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else () for t in tensors]
        const: dict[int, np.ndarray] = {}
        for t, tensor in enumerate(tensors):
            buf = model.Buffers(tensor.Buffer())
            if buf is None or buf.DataLength() == 0:
                if tensor.Type() != _FLOAT32:
                    raise TFLiteGraphError(
                        f"{name}: tensor {tensor.Name().decode()} has TensorType {tensor.Type()}; only float32 "
                        "activations are supported (is the graph quantized?)."
                    )
                continue
            if tensor.Type() not in _CONST_DTYPES:
                raise TFLiteGraphError(
                    f"{name}: constant {tensor.Name().decode()} has TensorType {tensor.Type()}."
                )
            raw = buf.DataAsNumpy().tobytes()
            const[t] = np.frombuffer(raw, _CONST_DTYPES[tensor.Type()]).reshape(shapes[t])
        self._input = graph.Inputs(0)
        self.input_shape = shapes[self._input][1:]
        self._outputs = tuple(graph.Outputs(k) for k in range(graph.OutputsLength()))
        self.output_names = tuple(tensors[o].Name().decode() for o in self._outputs)
        self.output_shapes = tuple(shapes[o][1:] for o in self._outputs)
        ops: list[_Op] = []
        for j in range(graph.OperatorsLength()):
            op = graph.Operators(j)
            kind = codes[op.OpcodeIndex()]
            if kind not in SUPPORTED_OPS:
                raise TFLiteGraphError(
                    f"{name} uses the TFLite op {kind}, which talk.track.tflite_torch does not support "
                    f"(supported: {', '.join(SUPPORTED_OPS)})."
                )
            ins = tuple(op.Inputs(k) for k in range(op.InputsLength()))
            out = op.Outputs(0)
            if kind == "DEQUANTIZE":  # fp16 weights stored once, widened here once
                if ins[0] not in const:
                    raise TFLiteGraphError(
                        f"{name}: DEQUANTIZE of a non-constant tensor (a quantized graph)."
                    )
                const[out] = const[ins[0]].astype(np.float32)
                continue
            compiled = self._compile(kind, ins, out, self._options(tflite, kind, op), const, shapes, name)
            if any(i in const for i in compiled.inputs):
                raise TFLiteGraphError(f"{name}: {kind} with a constant operand is not supported.")
            ops.append(compiled)
        self._ops = ops
        # After op j, tensors read for the last time there are dropped (keeps batched runs small in memory).
        last_use: dict[int, int] = {}
        for j, op in enumerate(ops):
            for i in op.inputs:
                last_use[i] = j
        self._release = [
            tuple(i for i in op.inputs if last_use[i] == j and i not in self._outputs)
            for j, op in enumerate(ops)
        ]

    @staticmethod
    def _options(tflite: ModuleType, kind: str, op: Any) -> Any:
        cls = {
            "CONV_2D": tflite.Conv2DOptions,
            "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
            "MAX_POOL_2D": tflite.Pool2DOptions,
            "ADD": tflite.AddOptions,
            "CONCATENATION": tflite.ConcatenationOptions,
        }.get(kind)
        table = op.BuiltinOptions()
        if cls is None or table is None:
            return None
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def _buffer(self, tensor_id: int, value: np.ndarray) -> str:
        """Register a constant as a buffer named after its tensor id; returns the name."""
        key = f"t{tensor_id}"
        if key in self._buffers:  # a constant shared by two ops
            return key
        self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(value, np.float32)))
        return key

    def _compile(self, kind: str, ins: tuple[int, ...], out: int, options: Any, const: dict[int, np.ndarray],
                 shapes: list[tuple[int, ...]], name: str) -> _Op:  # fmt: skip
        def activation() -> str:
            code = options.FusedActivationFunction() if options is not None else 0
            if code not in _ACTIVATIONS:
                raise TFLiteGraphError(f"{name}: {kind} with fused activation code {code} is not supported.")
            return _ACTIVATIONS[code]

        def const_input(k: int) -> np.ndarray:
            if k >= len(ins) or ins[k] not in const:
                raise TFLiteGraphError(
                    f"{name}: {kind} expects a constant input {k}; this graph computes it."
                )
            return const[ins[k]]

        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if options.DilationHFactor() != 1 or options.DilationWFactor() != 1:
                raise TFLiteGraphError(f"{name}: dilated {kind} is not supported.")
            w = const_input(1)
            if kind == "CONV_2D":
                weight, groups = w.transpose(0, 3, 1, 2), 1  # OHWI -> OIHW
            else:
                # 1HWO -> O1HW, one group per input channel (O = channels x depth multiplier)
                weight, groups = w.transpose(3, 0, 1, 2), shapes[ins[0]][3]
            bias = self._buffer(ins[2], const_input(2)) if len(ins) > 2 and ins[2] >= 0 else None
            stride = (options.StrideH(), options.StrideW())
            pad = self._pad(shapes[ins[0]], weight.shape[2:], stride, options.Padding())
            params = dict(
                weight=self._buffer(ins[1], weight), bias=bias, stride=stride, groups=groups, pad=pad
            )
            return _Op("CONV", ins[:1], out, {**params, "act": activation()})
        if kind == "MAX_POOL_2D":
            size = (options.FilterHeight(), options.FilterWidth())
            stride = (options.StrideH(), options.StrideW())
            pad = self._pad(shapes[ins[0]], size, stride, options.Padding())
            return _Op(kind, ins[:1], out, dict(size=size, stride=stride, pad=pad, act=activation()))
        if kind == "ADD":
            return _Op(kind, ins[:2], out, dict(act=activation()))
        if kind == "RELU":
            return _Op(kind, ins[:1], out)
        if kind == "PRELU":
            alpha = const_input(1).reshape(-1)
            if alpha.size not in (1, shapes[ins[0]][-1]):
                raise TFLiteGraphError(f"{name}: PRELU with a non per-channel slope {const[ins[1]].shape}.")
            return _Op(kind, ins[:1], out, dict(alpha=self._buffer(ins[1], alpha)))
        if kind == "PAD":
            p = const_input(1).astype(int)  # NHWC [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
            if p.shape != (4, 2) or p[0].any():
                raise TFLiteGraphError(
                    f"{name}: PAD of the batch axis or of a non 4-D tensor is not supported."
                )
            return _Op(kind, ins[:1], out, dict(pad=(p[2, 0], p[2, 1], p[1, 0], p[1, 1], p[3, 0], p[3, 1])))
        if kind == "RESHAPE":
            return _Op(kind, ins[:1], out, dict(shape=(-1, *shapes[out][1:])))
        if kind == "CONCATENATION":
            rank = len(shapes[out])
            axis = options.Axis() % rank
            if axis == 0:
                raise TFLiteGraphError(f"{name}: CONCATENATION along the batch axis is not supported.")
            return _Op(
                kind, ins, out, dict(axis=_NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis, act=activation())
            )
        raise AssertionError(kind)  # every name in SUPPORTED_OPS is handled above

    @staticmethod
    def _pad(
        shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: int
    ) -> tuple[int, ...]:
        """F.pad order (left, right, top, bottom) for a NHWC input of static ``shape``; TF padding 0 = SAME."""
        if padding != 0:  # VALID
            return (0, 0, 0, 0)
        top, bottom = _same_padding(shape[1], kernel[0], stride[0])
        left, right = _same_padding(shape[2], kernel[1], stride[1])
        return (left, right, top, bottom)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Run the graph.

        Args:
            x: Input batch, NHWC ``[B, *input_shape]``, float (the graph's value range, e.g. [-1, 1]).

        Returns:
            One float32 tensor per graph output, in ``output_names`` order, ``[B, *output_shapes[k]]`` (NHWC).
        """
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"TFLiteGraph input must have shape [B, {', '.join(map(str, self.input_shape))}], got "
                             f"{tuple(x.shape)}.")  # fmt: skip
        with torch.inference_mode():
            x = x.float()
            env: dict[int, Tensor] = {self._input: x.permute(0, 3, 1, 2) if x.dim() == 4 else x}
            for op, release in zip(self._ops, self._release, strict=True):
                env[op.output] = getattr(self, f"_run_{op.kind.lower()}")(op, *(env[i] for i in op.inputs))
                for i in release:
                    del env[i]
            return tuple(env[o].permute(0, 2, 3, 1) if env[o].dim() == 4 else env[o] for o in self._outputs)

    @staticmethod
    def _act(x: Tensor, act: str) -> Tensor:
        return F.relu(x) if act == "RELU" else F.relu6(x) if act == "RELU6" else x

    def _run_conv(self, op: _Op, x: Tensor) -> Tensor:
        p = op.params
        bias = getattr(self, p["bias"]) if p["bias"] else None
        left, right, top, bottom = p["pad"]
        if left == right and top == bottom:  # symmetric: conv2d pads by itself, without copying the input
            padding = (top, left)
        else:
            x, padding = F.pad(x, p["pad"]), (0, 0)
        y = F.conv2d(x, getattr(self, p["weight"]), bias, p["stride"], padding, 1, p["groups"])
        return self._act(y, p["act"])

    def _run_max_pool_2d(self, op: _Op, x: Tensor) -> Tensor:
        p = op.params
        if any(p["pad"]):
            x = F.pad(x, p["pad"], value=float("-inf"))  # padded cells never win the max, as in TF
        return self._act(F.max_pool2d(x, p["size"], p["stride"]), p["act"])

    def _run_add(self, op: _Op, a: Tensor, b: Tensor) -> Tensor:
        return self._act(a + b, op.params["act"])

    def _run_relu(self, op: _Op, x: Tensor) -> Tensor:
        return F.relu(x)

    def _run_prelu(self, op: _Op, x: Tensor) -> Tensor:
        return F.prelu(x, getattr(self, op.params["alpha"]))

    def _run_pad(self, op: _Op, x: Tensor) -> Tensor:
        return F.pad(x, op.params["pad"])  # also pads channels (BlazeFace widens its residual branches so)

    def _run_reshape(self, op: _Op, x: Tensor) -> Tensor:
        y = (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(op.params["shape"])  # TFLite reshapes NHWC
        return y.permute(0, 3, 1, 2) if y.dim() == 4 else y

    def _run_concatenation(self, op: _Op, *xs: Tensor) -> Tensor:
        return self._act(torch.cat(xs, op.params["axis"]), op.params["act"])
