"""The incremental decoding loop of MotionLM: one transformer step per pattern step over a preallocated KV cache.

``MotionLM.generate`` feeds all audio at once; ``MotionLM.stream`` feeds chunks as they arrive;
``MotionLM.generate_pieces`` runs ``generate``'s steps and returns the frames a bounded piece at a time. All run the
same :class:`DecodeSession` steps on the same inputs, which is why streaming equals offline generation. The step
inputs come from the model's own input API (``condition``, ``step_input``), the one implementation the full
forward pass uses too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from motion.lm.inputs import MotionLMInputError, check_audio
from motion.lm.outputs import Generation
from motion.lm.sampling import Sampling, sample_tokens
from motion.lm.transformer import rope_frequencies

# ``model`` below is always a ``motion.lm.MotionLM``, typed as a module here so that the dependency runs one way
# (model -> decode): the decode loop uses only MotionLM's public step API.


@contextmanager
def intra_op_threads(num_threads: int) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU thread count (process-wide); 0 leaves it as it is."""
    previous = torch.get_num_threads()
    if num_threads <= 0 or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DecodeSession:
    """Incremental decoding state of a MotionLM.

    Buffers grow per chunk (amortised), never per step, and drop what no future step or yield needs, so
    streaming memory is bounded.

    Step s may run once (a) its audio frame ``s + audio_shift`` has arrived and (b) frame s - 1 is known to
    exist: the delay pattern feeds the tokens of frames s - 1 - k into step s, and a frame past the end would be
    the special token instead. When the audio has ended both are known for every step.

    Sampled decoding draws from ``sampling.generators(B, device)`` on the model's device, created here, once per
    session: generation and streaming with the same ``Sampling`` draw the same numbers in the same order, and each
    sequence draws from its own generator, so its tokens do not depend on the rest of the batch.

    Args:
        model: The MotionLM.
        style: ``[B]`` ids or ``[B, num_styles]`` weights.
        sampling: Token choice.
        capacity: KV cache positions (the attention window).
        teacher: Optional ``[B, K, S]`` step sequence to feed instead of sampling (teacher forcing).
        record: Optional ``[B, K, S, C]`` buffer that receives every step's logits (guided ones under CFG).
        keep_probs: Keep each step's (guided) logits alongside its tokens, so that :meth:`run` can also return
            the distributions the frames' tokens were chosen from (bounded like the token buffer).
        horizon: Steps the token (and logits) buffer reaches past the current step; None reaches every step the
            audio received so far allows. A session fed a long audio at once keeps a bounded buffer with it.
    """

    @torch.inference_mode()
    def __init__(
        self,
        model: nn.Module,
        style: Tensor,
        sampling: Sampling,
        capacity: int,
        teacher: Tensor | None = None,
        record: Tensor | None = None,
        keep_probs: bool = False,
        horizon: int | None = None,
    ) -> None:
        if not isinstance(sampling, Sampling):
            raise TypeError(f"sampling must be a motion.lm.Sampling, not {type(sampling).__name__}.")
        pattern = model.pattern
        self.model = model
        self.sampling = sampling
        self.teacher = teacher
        self.record = record
        self.horizon = None if horizon is None else max(1, horizon)
        self.num_codebooks = pattern.num_codebooks
        self.special_token = pattern.special_token
        self.delays = pattern.delays
        self.max_delay = pattern.max_delay
        self.shift = model.audio_shift
        self.style_vec = style_vec = model.style_vector(style)
        self.batch = b = style_vec.shape[0]
        self.device = device = style_vec.device
        self.generators = sampling.generators(b, device) if teacher is None else None
        self.pad = model.pad_condition(style_vec)
        self.cfg = teacher is None and sampling.cfg_scale != 1.0
        self.null = model.null_condition(b)
        self.delay_t = torch.tensor(self.delays, device=device)
        self.head_dim = model.head_dim
        self.trunk = model.step_trunk()  # prepared once: every step reuses it
        self.cache = model.new_cache(2 * b if self.cfg else b, capacity)
        # Conditioning of the audio frames [audio_start, received): what the coming steps still read.
        self.audio = style_vec.new_zeros(b, 0, model.d_model)
        self.audio_start = 0
        self.seq = torch.full((b, self.num_codebooks, 0), self.special_token, device=device)
        # Logits of the steps in seq (same extent), when the distributions are wanted.
        self.logits = (
            style_vec.new_zeros(b, self.num_codebooks, 0, model.codebook_size) if keep_probs else None
        )
        self.seq_start = 0  # step index of seq[..., 0]
        self.rope = rope_frequencies(self.head_dim, 0, 0, device)
        self.rope_start = 0
        self.step = 0  # next step to run
        self.received = 0  # audio frames fed so far
        self.total: int | None = None  # Tq, once the audio has ended
        self.emitted = 0  # frames already returned

    @torch.inference_mode()
    def feed(self, audio: Tensor, name: str = "audio") -> None:
        """Append audio ``[B, n, Da]`` at the token rate (any n >= 0); ``name`` is what errors call it."""
        check_audio(audio, self.model.audio_dim, name)
        if audio.shape[0] != self.batch:
            raise MotionLMInputError(f"{name} has batch {audio.shape[0]}, style has batch {self.batch}.")
        feat = self.model.condition(audio.to(self.style_vec.dtype), self.style_vec)
        keep = min(max(self.step + self.shift - self.audio_start, 0), self.audio.shape[1])
        self.audio = torch.cat([self.audio[:, keep:], feat], dim=1)
        self.audio_start += keep
        self.received += audio.shape[1]
        self._reserve(self.received + self.max_delay + 1)

    @torch.inference_mode()
    def end(self) -> None:
        """Mark the end of the audio: Tq is now known and every remaining step can run."""
        self.total = self.received
        self._reserve(self.received + self.max_delay + 1)

    def _reserve(self, end_step: int) -> None:
        """Make the step buffer and rotary table cover steps up to ``end_step`` (doubling, dropping the done)."""
        if self.horizon is not None:
            end_step = min(end_step, self.step + self.horizon)
        if end_step > self.seq_start + self.seq.shape[-1]:
            start = max(min(self.emitted, self.step - 1), self.seq_start)
            size = max(2 * (end_step - start), 64) if self.total is None else end_step - start
            seq = torch.full((self.batch, self.num_codebooks, size), self.special_token, device=self.device)
            kept = self.seq[:, :, start - self.seq_start :]
            seq[:, :, : kept.shape[-1]] = kept
            if self.logits is not None:
                logits = self.logits.new_zeros(*seq.shape, self.logits.shape[-1])
                logits[:, :, : kept.shape[-1]] = self.logits[:, :, start - self.seq_start :]
                self.logits = logits
            self.seq, self.seq_start = seq, start
        if end_step > self.rope_start + self.rope.shape[0]:
            self.rope = rope_frequencies(self.head_dim, self.step, self.seq.shape[-1], self.device)
            self.rope_start = self.step

    def _runnable(self) -> bool:
        if self.total is not None:
            return self.step < (self.total + self.max_delay if self.total else 0)
        return self.step <= self.received and self.step + self.shift < self.received

    def _complete(self) -> int:
        done = max(self.step - self.max_delay, 0)
        return min(done, self.total if self.total is not None else self.received)

    def run(self, stop_at_frame: bool, max_frames: int | None = None) -> Generation | None:
        """Run the steps the audio allows; return the newly complete frames, or None if there are none.

        Args:
            stop_at_frame: Return as soon as one more frame is complete (streaming latency) instead of running
                every runnable step first.
            max_frames: Return once this many frames are complete (a bounded piece); None runs on.

        Returns:
            ``Generation(codes [B, K, m], probs [B, K, m, C] with keep_probs)`` of normal tensors (usable with
            autograd, unlike the session's inference-mode buffers).
        """
        threads = self.model.decode_threads if self.device.type == "cpu" else 0
        with torch.inference_mode(), intra_op_threads(threads):
            while self._runnable():
                self._step()
                if stop_at_frame and self._complete() > self.emitted:
                    break
                if max_frames is not None and self._complete() - self.emitted >= max_frames:
                    break
            done = self._complete()
            if done <= self.emitted:
                return None
            first, stop = self.emitted - self.seq_start, done - self.seq_start
            self.emitted = done

            def frames(steps: Tensor) -> Tensor:
                """Step layout ``[B, K, S, ...]`` -> the new frames ``[B, K, m, ...]``."""
                return torch.stack([steps[:, k, first + d : stop + d] for k, d in enumerate(self.delays)], 1)

            codes = frames(self.seq)
            probs = None if self.logits is None else self.sampling.probabilities(frames(self.logits))
        # Clones made outside inference mode are normal tensors.
        return Generation(codes.clone(), None if probs is None else probs.clone())

    def _step(self) -> None:
        s = self.step
        if s >= self.seq_start + self.seq.shape[-1]:  # a session with a horizon reserves as it goes
            self._reserve(self.received + self.max_delay + 1)
        prev = None  # step 0 reads BOS
        if s > 0:
            prev = self.seq[:, :, s - 1 - self.seq_start]
            if s - 1 < self.max_delay or (self.total is not None and s - 1 >= self.total):
                # Ramps of the pattern: codebooks whose frame lies outside [0, Tq) read the special token.
                frame = s - 1 - self.delay_t
                valid = (frame >= 0) & (frame < (self.total if self.total is not None else s))
                prev = torch.where(valid, prev, self.special_token)
        frame = s + self.shift
        cond = self.audio[:, frame - self.audio_start] if 0 <= frame < self.received else self.pad
        if self.cfg:  # both branches in one batch: conditional rows first, then the null condition
            x = self.model.step_input(prev, torch.stack([cond, self.null])).flatten(0, 1)
        else:
            x = self.model.step_input(prev, cond)
        logits = self.trunk.logits(x, self.rope[s - self.rope_start], self.cache)
        self.cache.advance()
        if self.cfg:
            logits = torch.lerp(logits[self.batch :], logits[: self.batch], self.sampling.cfg_scale)
        if self.record is not None:
            self.record[:, :, s] = logits
        if self.logits is not None:
            self.logits[:, :, s - self.seq_start] = logits
        if self.teacher is not None:
            tokens = self.teacher[:, :, s]
        else:
            tokens = sample_tokens(logits, self.sampling, self.generators)
        self.seq[:, :, s - self.seq_start] = tokens
        self.step = s + 1


def generate(
    model: nn.Module,
    audio: Tensor,
    style: Tensor,
    num_frames: int | None,
    sampling: Sampling,
    return_probs: bool,
) -> Generation:
    """The body of :meth:`MotionLM.generate <motion.lm.model.MotionLM.generate>` (see there)."""
    session = _offline_session(model, audio, style, num_frames, sampling, return_probs, None)
    out = session.run(stop_at_frame=False)
    if out is None:  # zero frames
        codes = torch.zeros(session.batch, model.num_codebooks, 0, dtype=torch.long, device=session.device)
        probs = codes.new_zeros((*codes.shape, model.codebook_size), dtype=session.style_vec.dtype)
        out = Generation(codes, probs if return_probs else None)
    return out


def generate_pieces(
    model: nn.Module,
    audio: Tensor,
    style: Tensor,
    num_frames: int | None,
    sampling: Sampling,
    return_probs: bool,
    piece_frames: int,
) -> Iterator[Generation]:
    """The body of :meth:`MotionLM.generate_pieces <motion.lm.model.MotionLM.generate_pieces>` (see there).

    :func:`generate`'s session (same cache capacity, same conditioning of the whole audio, same steps), whose
    buffers reach ``piece_frames`` steps ahead and whose frames are returned ``piece_frames`` at a time.
    """
    if piece_frames < 1:
        raise ValueError(f"piece_frames={piece_frames} must be at least 1.")
    session = _offline_session(model, audio, style, num_frames, sampling, return_probs, piece_frames)
    return _pieces(session, piece_frames)


def _offline_session(
    model: nn.Module,
    audio: Tensor,
    style: Tensor,
    num_frames: int | None,
    sampling: Sampling,
    return_probs: bool,
    horizon: int | None,
) -> DecodeSession:
    """A session fed the whole audio (``num_frames`` token frames of it) and its end, with a KV cache no larger
    than its steps."""
    check_audio(audio, model.audio_dim)
    tq = audio.shape[1] if num_frames is None else num_frames
    if not 0 <= tq <= audio.shape[1]:
        raise MotionLMInputError(f"num_frames={num_frames} must be in [0, {audio.shape[1]}] (audio frames).")
    capacity = max(1, min(model.max_context, model.pattern.num_steps(tq)))
    session = DecodeSession(model, style, sampling, capacity, keep_probs=return_probs, horizon=horizon)
    session.feed(audio[:, :tq])
    session.end()
    return session


def _pieces(session: DecodeSession, piece_frames: int) -> Iterator[Generation]:
    while (out := session.run(stop_at_frame=False, max_frames=piece_frames)) is not None:
        yield out


def stream(
    model: nn.Module, audio_chunks: Iterable[Tensor], style: Tensor, sampling: Sampling, return_probs: bool
) -> Iterator[Generation]:
    """The body of :meth:`MotionLM.stream <motion.lm.model.MotionLM.stream>` (see there).

    The session is made now, so that style and sampling errors surface at the call, not at the first ``next``.
    """
    session = DecodeSession(model, style, sampling, model.max_context, keep_probs=return_probs)
    return _stream(session, audio_chunks)


def _stream(session: DecodeSession, audio_chunks: Iterable[Tensor]) -> Iterator[Generation]:
    for chunk in audio_chunks:
        session.feed(chunk, "audio chunk")
        while (out := session.run(stop_at_frame=True)) is not None:
            yield out
    session.end()
    while (out := session.run(stop_at_frame=True)) is not None:
        yield out


def teacher_forced_logits(model: nn.Module, sequence: Tensor, audio: Tensor, style: Tensor) -> Tensor:
    """Logits ``[B, K, S, C]`` of a step sequence ``[B, K, S]`` fed step by step through the KV cache.

    The incremental decoder of :func:`generate`, teacher-forced (``MotionLM.forward_cached``).
    """
    b, k, s = sequence.shape
    with torch.inference_mode():
        record = torch.empty(b, k, s, model.codebook_size, dtype=audio.dtype, device=sequence.device)
    session = DecodeSession(
        model, style, Sampling(temperature=0.0), min(model.max_context, s), sequence, record
    )
    session.feed(audio)
    session.end()
    session.run(stop_at_frame=False)
    return record.clone()
