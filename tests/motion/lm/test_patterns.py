import pytest
import torch

from motion.lm import Pattern, PatternError
from talk.errors import UserError


@pytest.mark.parametrize("kind", ["parallel", "delay"])
@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("tq", [1, 7, 10])
def test_build_revert_round_trip(kind, k, tq):
    pattern = Pattern(kind, num_codebooks=k, codebook_size=5)
    codes = torch.randint(0, 5, (3, k, tq), generator=torch.Generator().manual_seed(tq * 10 + k))
    sequence, mask = pattern.build(codes)
    assert sequence.shape == (3, k, pattern.num_steps(tq))
    assert mask.shape == (k, pattern.num_steps(tq))
    assert int(mask.sum()) == k * tq
    # Valid positions hold codes, the others the special id C.
    assert (sequence[:, ~mask] == 5).all()
    assert (sequence[:, mask] < 5).all()
    assert torch.equal(pattern.revert(sequence), codes)


def test_delay_layout_is_musicgen_delay():
    pattern = Pattern("delay", num_codebooks=3, codebook_size=9)
    codes = torch.arange(3 * 4).view(1, 3, 4) % 9
    sequence = pattern.build(codes).sequence[0]
    assert sequence.shape == (3, 6)
    for k in range(3):
        for q in range(4):
            assert pattern.step_of(q, k) == q + k
            assert sequence[k, q + k] == codes[0, k, q]
    assert sequence[1, 0] == 9 and sequence[2, 1] == 9 and sequence[0, 4] == 9 and sequence[0, 5] == 9


def test_parallel_layout_is_identity():
    pattern = Pattern("parallel", num_codebooks=4, codebook_size=3)
    codes = torch.randint(0, 3, (2, 4, 5))
    sequence, mask = pattern.build(codes)
    assert torch.equal(sequence, codes) and mask.all()
    assert pattern.step_of(3, 2) == 3


def test_frames_complete_after():
    delay = Pattern("delay", num_codebooks=4)
    assert [delay.frames_complete_after(s) for s in range(-1, 6)] == [0, 0, 0, 0, 1, 2, 3]
    assert delay.frames_complete_after(100, num_frames=7) == 7
    parallel = Pattern("parallel", num_codebooks=4)
    assert [parallel.frames_complete_after(s) for s in range(-1, 3)] == [0, 1, 2, 3]


def test_pads_in_codes_stay_special_and_empty_sequences_work():
    pattern = Pattern("delay", num_codebooks=2, codebook_size=4)
    codes = torch.tensor([[[1, 2, 4], [3, 0, 4]]])  # last frame marked as padding (id C)
    sequence = pattern.build(codes).sequence
    assert sequence[0, 0].tolist() == [1, 2, 4, 4] and sequence[0, 1].tolist() == [4, 3, 0, 4]
    assert pattern.build(torch.zeros(2, 2, 0, dtype=torch.long)).sequence.shape == (2, 2, 0)
    assert pattern.revert(torch.zeros(2, 2, 0, dtype=torch.long)).shape == (2, 2, 0)


def test_errors_name_the_problem():
    with pytest.raises(PatternError, match="pattern='zigzag'"):
        Pattern("zigzag")
    with pytest.raises(PatternError, match="K=4"):
        Pattern("delay", num_codebooks=4).build(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(PatternError, match="more than 3 steps"):
        Pattern("delay", num_codebooks=4).revert(torch.zeros(1, 4, 2, dtype=torch.long))


def test_pattern_errors_are_user_errors():
    assert issubclass(PatternError, UserError) and issubclass(PatternError, ValueError)
