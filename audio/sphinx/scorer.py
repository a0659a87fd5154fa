"""Frame-level senone scores and phone posteriors from the CMU Sphinx US English PTM acoustic model, in torch.

The model (PocketSphinx's ``en-us``, ``-model ptm``) has 42 CI phones (39 ARPAbet phones without stress, ``SIL``
and the noises ``+NSN+``, ``+SPN+``), 5126 senones (126 CI + 5000 tied context-dependent states of 3-state
left-to-right triphone HMMs) and phonetically tied mixtures: the features are split into 3 streams (cepstra,
deltas, double deltas: ``-svspec 0-12/13-25/26-38``), and every CI phone owns one codebook of 128 diagonal
Gaussians per stream, shared by all senones of that base phone with senone-specific mixture weights.

Senone score (natural log, per frame t), as ``ptm_mgau.c`` computes it with all senones active:
``score[t, s] = sum over streams f of log sum over k in topN(t, f, cb(s)) of w[f, k, s] * N(x_f(t); mu, var)``
where topN are the ``top_n`` (4, PocketSphinx's ``-topn``) best Gaussians of the senone's codebook in that frame
and stream. Variances are floored at 1e-4 (``-varfloor``). PocketSphinx additionally works in integer log units
(base 1.0001, shifted by 10 bits: 0.1024 nats), clamps each Gaussian to at most 96 units below the frame's best
one and writes scores relative to the frame's best senone; this module keeps floating point and absolute
log-likelihoods (the mixture weights themselves are the model's 8-bit quantized ones).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio.sphinx.frontend import SphinxFrontEnd
from audio.sphinx.model_io import (
    MIXW_LOG_UNIT,
    ModelDefinition,
    SphinxModelError,
    default_model_dir,
    read_feat_params,
    read_gaussians,
    read_mdef,
    read_sendump,
    read_transition_matrices,
)

__all__ = ["SphinxAcousticModel"]

_VAR_FLOOR = 1e-4  # PocketSphinx's -varfloor default
_LOG_BASE = math.log(1.0001)  # PocketSphinx's log unit (-logbase 1.0001), in nats


class SphinxAcousticModel(nn.Module):
    """CMU Sphinx US English acoustic model: waveform -> features, senone scores, CI phone log-posteriors.

    Frozen: every tensor is a non-persistent float32 buffer read from the model files, so a checkpoint of a module
    that holds this one stores none of it (keep it in float32: casting the module to half precision would round
    the model away; autocast regions are harmless, scoring disables them). Input is a 16 kHz mono float waveform in [-1, 1] (``[N]`` tensor or
    array), scaled by 32768 to the 16-bit samples ``process_raw`` sees. Frames follow the PocketSphinx framing
    documented in :mod:`audio.sphinx.frontend` (100 per second, ``num_frames(N)`` of them); CMN is per
    utterance (batch), so every output frame depends on the whole waveform's cepstral mean.

    Args:
        model_dir: Folder with ``feat.params``, ``mdef``, ``means``, ``variances``, ``sendump`` and
            ``transition_matrices``; None: the model inside the installed pocketsphinx wheel.
        top_n: Gaussians per codebook, stream and frame that enter a senone's score (PocketSphinx ``-topn``).
        chunk_frames: Frames scored at once: scoring needs about 0.1 MB per chunk frame (25 MB at 256) whatever
            the audio length; the front end keeps about 0.3 KB per frame (a waveform of N samples also takes
            16 N bytes while it runs).
        integer_precisions: Truncate each Gaussian's per-dimension precision ``1 / (2 var)`` and log normalizer
            to whole multiples of ln(1.0001), as PocketSphinx stores them. Its effect is not negligible: up to
            1 % of the quadratic term of the widest (delta and double-delta) Gaussians, 0.1-0.5 nats, enough to
            reorder the top-N; True reproduces the reference runtime's choices.
        equal_phone_priors: In ``phone_log_posteriors``, average the senone likelihoods of each phone instead of
            summing them (subtract log of its senone count: equal prior per phone, not per senone). The sum
            favours phones with many tied states (AH has 468 senones, SIL 3): on the 16 bundled real
            recordings it labels 12 % of pause frames as silence against 82 % with equal priors, while speech
            frames go from 44 % to 40 % correct (frame argmax against their phone labels).

    Attributes:
        phones: The P = 42 CI phone names, the columns of ``phone_log_posteriors``.
        mdef: The model definition (phones, HMM senone sequences, ``sen_base``), see :class:`ModelDefinition`.
        sen_base: ``[n_sen]`` base CI phone (= codebook) of each senone.
        transitions: ``[n_tmat, 3, 4]`` HMM transition log-probabilities (the last column exits the phone);
            phone p uses ``transitions[mdef.phone_tmat[p]]``.
        frontend: The :class:`SphinxFrontEnd` configured by the model's ``feat.params``.
    """

    sample_rate = 16000
    frame_rate = 100.0

    def __init__(
        self,
        model_dir: str | Path | None = None,
        top_n: int = 4,
        chunk_frames: int = 256,
        integer_precisions: bool = True,
        equal_phone_priors: bool = False,
    ) -> None:
        super().__init__()
        model_dir = default_model_dir() if model_dir is None else Path(model_dir)
        if not model_dir.is_dir():
            raise SphinxModelError(
                f"{model_dir}: not a folder; pass the folder holding the Sphinx model files"
            )
        if top_n < 1 or chunk_frames < 1:
            raise ValueError(f"top_n and chunk_frames must be >= 1, got {top_n} and {chunk_frames}")
        params = read_feat_params(model_dir / "feat.params")
        if params.get("model", "ptm") != "ptm":
            raise SphinxModelError(
                f"{model_dir / 'feat.params'}: -model {params['model']} is not supported (ptm)"
            )
        self.frontend = SphinxFrontEnd.from_feat_params(params, self.sample_rate)
        self.mdef: ModelDefinition = read_mdef(model_dir / "mdef")
        means = read_gaussians(model_dir / "means")
        var = read_gaussians(model_dir / "variances")
        mixw = read_sendump(model_dir / "sendump")
        tmat = read_transition_matrices(model_dir / "transition_matrices")
        self._check(model_dir, params, means, var, mixw, tmat)
        if top_n > means.shape[2]:
            raise ValueError(f"top_n = {top_n} exceeds the {means.shape[2]} Gaussians of a codebook")
        self.top_n = top_n
        self.chunk_frames = chunk_frames
        self.phones: tuple[str, ...] = self.mdef.ci_phones
        var = np.maximum(var.astype(np.float64), _VAR_FLOOR)
        prec, lognorm = 0.5 / var, -0.5 * np.log(2 * math.pi * var)  # per dimension
        if integer_precisions:
            # PocketSphinx stores both per dimension as whole numbers of its log unit ln(1.0001), truncated.
            prec, lognorm = (np.trunc(v / _LOG_BASE) * _LOG_BASE for v in (prec, lognorm))
        # log N(x) = sum_d lognorm_d - prec_d (x_d - mu_d)^2 = [x^2, x, 1] . [-prec, 2 prec mu, const]: one matrix
        # product per stream. In float32 the expansion costs at most 2e-4 nats on the top-4 Gaussians of real
        # speech (measured against float64; it changes 1 in 1e5 top-4 sets, all near-ties).
        means = means.astype(np.float64)
        const = (lognorm - prec * means**2).sum(-1, keepdims=True)  # [CB, S, K, 1]
        gauss = np.concatenate([-prec, 2 * prec * means, const], -1).transpose(1, 3, 0, 2)  # [S, 2D+1, CB, K]
        self.register_buffer(
            "_gauss",
            torch.from_numpy(gauss.reshape(gauss.shape[0], gauss.shape[1], -1)).float(),
            persistent=False,
        )
        # Mixture weights as probabilities, senones grouped by codebook (= base phone): codebook c's block is a
        # contiguous [K, n_c] table, the embedding table of a weighted bag over its top-N Gaussians.
        order = np.argsort(self.mdef.sen_base, kind="stable")
        self._cb_bounds = np.searchsorted(self.mdef.sen_base[order], np.arange(len(self.phones) + 1)).tolist()
        weights = np.exp(-mixw[:, :, order].astype(np.float64) * MIXW_LOG_UNIT)  # [S, K, n_sen], grouped
        blocks = [
            weights[:, :, a:b].reshape(len(weights), -1) for a, b in itertools.pairwise(self._cb_bounds)
        ]
        self.register_buffer("_mixw", torch.from_numpy(np.concatenate(blocks, 1)).float(), persistent=False)
        self.register_buffer("_sort", torch.from_numpy(order), persistent=False)
        self.register_buffer("_unsort", torch.from_numpy(np.argsort(order)), persistent=False)
        self.register_buffer("sen_base", torch.from_numpy(self.mdef.sen_base), persistent=False)
        self.register_buffer("transitions", torch.from_numpy(tmat), persistent=False)
        counts = np.diff(self._cb_bounds).astype(np.float32)
        bias = -np.log(counts) if equal_phone_priors else np.zeros_like(counts)
        self.register_buffer("_phone_bias", torch.from_numpy(bias), persistent=False)
        self.n_codebooks, self.n_density = means.shape[0], means.shape[2]

    @classmethod
    def load(cls, model_dir: str | Path | None = None, **kwargs) -> SphinxAcousticModel:
        """The model in ``model_dir`` (None: the one in the pocketsphinx wheel), in eval mode; kwargs as __init__."""
        return cls(model_dir, **kwargs).eval()

    def _check(
        self,
        model_dir: Path,
        params: dict,
        means: np.ndarray,
        var: np.ndarray,
        mixw: np.ndarray,
        tmat: np.ndarray,
    ) -> None:
        m = self.mdef
        n_cb, n_stream, n_density, dim = means.shape
        if var.shape != means.shape:
            raise SphinxModelError(
                f"{model_dir / 'variances'}: shape {var.shape} differs from means {means.shape}"
            )
        if n_cb != len(m.ci_phones) or n_stream * dim != 3 * self.frontend.n_cep:
            raise SphinxModelError(
                f"{model_dir / 'means'}: {n_cb} codebooks of {n_stream} x {dim} dims do not fit a PTM model of "
                f"{len(m.ci_phones)} CI phones and {3 * self.frontend.n_cep}-dim features"
            )
        if params.get("svspec", "0-12/13-25/26-38") != "0-12/13-25/26-38" or n_stream not in (1, 3):
            raise SphinxModelError(f"{model_dir / 'feat.params'}: only -svspec 0-12/13-25/26-38 is supported")
        if mixw.shape != (n_stream, n_density, m.n_sen):
            raise SphinxModelError(
                f"{model_dir / 'sendump'}: weights {mixw.shape} do not match {n_stream} streams, {n_density} "
                f"densities and the mdef's {m.n_sen} senones"
            )
        if tmat.shape[0] != m.n_tmat or tmat.shape[1] != m.n_emit_state:
            raise SphinxModelError(
                f"{model_dir / 'transition_matrices'}: shape {tmat.shape} does not match mdef"
            )
        if (m.sen_base < 0).any():
            raise SphinxModelError(f"{model_dir / 'mdef'}: some senones belong to no phone")

    def num_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` samples: 1 below 410 samples, else ``2 + (N - 410) // 160``."""
        return self.frontend.num_frames(n_samples)

    def cepstra(self, wav: Tensor | np.ndarray) -> Tensor:
        """Raw MFCCs ``[T, 13]`` float32 before CMN (PocketSphinx's ``mfclogdir`` output), on the module device."""
        return torch.from_numpy(self.frontend.cepstra(wav)).to(self._gauss.device)

    def features(self, wav: Tensor | np.ndarray) -> Tensor:
        """1s_c_d_dd features ``[T, 39]`` float32: CMN'd cepstra, deltas, double deltas."""
        return torch.from_numpy(self.frontend.features(wav)).to(self._gauss.device)

    @torch.no_grad()
    def topn_densities(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Best ``top_n`` Gaussians of every codebook, best first: (log densities, indices), ``[T, S, CB, top_n]``.

        Args:
            feats: ``[T, 39]`` features (one chunk: memory grows with T).
        """
        n_stream = self._gauss.shape[0]
        x = feats.float().reshape(len(feats), n_stream, -1).transpose(0, 1)  # [S, T, D]
        z = torch.cat([x * x, x, x.new_ones(n_stream, len(feats), 1)], -1)
        logn = torch.bmm(z, self._gauss).view(n_stream, len(feats), self.n_codebooks, self.n_density)
        vals, idx = logn.transpose(0, 1).topk(self.top_n, dim=-1)
        return vals, idx

    @torch.no_grad()
    def senone_scores_from_features(self, feats: Tensor) -> Tensor:
        """Senone log-likelihoods ``[T, n_sen]`` (float32, natural log) of ``[T, 39]`` features, in chunks."""
        out = [
            self._grouped_scores(chunk).index_select(1, self._unsort)
            for chunk in feats.split(self.chunk_frames)
        ]
        return torch.cat(out) if out else feats.new_zeros(0, len(self.sen_base))

    def _grouped_scores(self, feats: Tensor) -> Tensor:
        """Senone scores of one chunk ``[Tc, n_sen]``, senones grouped by codebook (order ``self._sort``)."""
        # float32 throughout, even inside a mixed-precision autocast region: log-densities of ~1e3 nats need it
        with torch.autocast(feats.device.type, enabled=False):
            return self._grouped_scores_fp32(feats.float())

    def _grouped_scores_fp32(self, feats: Tensor) -> Tensor:
        vals, idx = self.topn_densities(feats)  # [Tc, S, CB, N]
        top = vals[..., 0]
        rel = (vals - top.unsqueeze(-1)).exp()  # in (0, 1]: the codebook's best Gaussian is 1
        scores = feats.new_zeros(len(feats), len(self.sen_base))
        k = self.n_density
        for s in range(self._mixw.shape[0]):
            for c, (a, b) in enumerate(itertools.pairwise(self._cb_bounds)):
                if a == b:
                    continue
                table = self._mixw[s, k * a : k * b].view(k, b - a)
                # sum_k w[s, k] * N_k / N_best over the top-N: >= the best Gaussian's weight (>= e^-26), no underflow
                mix = F.embedding_bag(idx[:, s, c], table, per_sample_weights=rel[:, s, c], mode="sum")
                scores[:, a:b] += mix.log_() + top[:, s, c, None]
        return scores

    def _phones_from_grouped(self, scores: Tensor) -> Tensor:
        bounds = itertools.pairwise(self._cb_bounds)
        phone = torch.stack([torch.logsumexp(scores[:, a:b], 1) for a, b in bounds], 1)
        return torch.log_softmax(phone + self._phone_bias, dim=-1)

    @torch.no_grad()
    def phone_log_posteriors_from_senones(self, scores: Tensor) -> Tensor:
        """``[T, n_sen]`` senone scores -> ``[T, P]`` CI phone log-posteriors (see ``phone_log_posteriors``)."""
        return self._phones_from_grouped(scores.index_select(1, self._sort))

    def senone_scores(self, wav: Tensor | np.ndarray) -> Tensor:
        """Senone log-likelihoods ``[T, n_sen]`` float32 (natural log, not normalized per frame)."""
        return self.senone_scores_from_features(self.features(wav))

    @torch.no_grad()
    def phone_log_posteriors(self, wav: Tensor | np.ndarray) -> Tensor:
        """CI phone log-posteriors ``[T, P]`` float32, phone names in ``self.phones``.

        Per frame, phone p's score is the logsumexp of the scores of every senone whose base phone is p (its 3
        CI senones and all its context-dependent ones; minus the log of their number with
        ``equal_phone_priors``), then a log-softmax over the P phones.
        """
        return self.phone_log_posteriors_from_features(self.features(wav))

    @torch.no_grad()
    def phone_log_posteriors_from_features(self, feats: Tensor) -> Tensor:
        """``[T, 39]`` features (:meth:`features`) -> ``[T, P]`` CI phone log-posteriors, in chunks."""
        return torch.cat(
            [self._phones_from_grouped(self._grouped_scores(c)) for c in feats.split(self.chunk_frames)]
        )

    def forward(self, wav: Tensor | np.ndarray) -> Tensor:
        """Same as :meth:`phone_log_posteriors`."""
        return self.phone_log_posteriors(wav)
