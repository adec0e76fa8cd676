"""What torchaudio's compiled code does, on the CPU: its filters and its forced alignment."""

import torch
import torchaudio
import torchaudio.functional as F


def test_the_extension_is_torchaudios_own() -> None:
    assert torchaudio.__file__ is not None and "site-packages" in torchaudio.__file__


def test_lfilter_matches_the_recurrence() -> None:
    x = torch.rand(2, 64, dtype=torch.float64)
    a = torch.tensor([1.0, -0.5], dtype=torch.float64)
    b = torch.tensor([0.5, 0.5], dtype=torch.float64)
    y = F.lfilter(x, a, b, clamp=False)
    expected = torch.zeros_like(x)
    for t in range(x.shape[1]):
        previous_x = x[:, t - 1] if t else 0.0
        previous_y = expected[:, t - 1] if t else 0.0
        expected[:, t] = 0.5 * x[:, t] + 0.5 * previous_x + 0.5 * previous_y
    torch.testing.assert_close(y, expected)


def test_forced_align_follows_the_only_path() -> None:
    # three frames, three tokens (blank 0, 1, 2): the emissions make 1, 2, 2 the only
    # likely path, so the alignment is that one
    emissions = torch.full((1, 3, 3), -20.0)
    for frame, token in enumerate((1, 2, 2)):
        emissions[0, frame, token] = 0.0
    targets = torch.tensor([[1, 2]], dtype=torch.int32)
    alignment, scores = F.forced_align(emissions.log_softmax(-1), targets, blank=0)
    assert alignment.tolist() == [[1, 2, 2]]
    assert scores.shape == (1, 3)
