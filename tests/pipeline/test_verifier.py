import pytest
import torch

from pipeline.config import HEAD_NAMES, VerifierConfig
from pipeline.verifier import HeadSpec, build_head, count_parameters


def lstm_params(inp, hid):
    return 4 * (inp * hid + hid * hid + 2 * hid)


def gru_params(inp, hid):
    return 3 * (inp * hid + hid * hid + 2 * hid)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_every_head_maps_a_window_to_one_logit(name):
    spec = HeadSpec.from_config(VerifierConfig(hidden_size=16, dropout=0.0), input_dim=40, name=name)
    head = build_head(spec).eval()
    out = head(torch.randn(5, 8, 40))
    assert out.shape == (5,)
    assert torch.isfinite(out).all()


def test_parameter_counts_follow_the_architectures():
    cfg = VerifierConfig(hidden_size=16, dropout=0.0)
    D, Hd = 40, 16
    counts = {n: count_parameters(build_head(HeadSpec.from_config(cfg, D, n))) for n in HEAD_NAMES}
    assert counts["lstm"] == lstm_params(D, Hd) + Hd + 1
    assert counts["gru"] == gru_params(D, Hd) + Hd + 1
    assert counts["bilstm"] == 2 * lstm_params(D, Hd) + 2 * Hd + 1
    assert counts["deep-lstm"] == lstm_params(D, Hd) + 2 * lstm_params(Hd, Hd) + Hd + 1
    assert counts["deep-gru"] == gru_params(D, Hd) + 2 * gru_params(Hd, Hd) + Hd + 1
    assert counts["deep-bilstm"] == 2 * lstm_params(D, Hd) + 4 * lstm_params(2 * Hd, Hd) + 2 * Hd + 1


def test_deep_heads_stack_three_layers_unless_configured():
    assert HeadSpec.from_config(VerifierConfig(), 8, "deep-gru").num_layers == 3
    assert HeadSpec.from_config(VerifierConfig(num_layers=2), 8, "deep-gru").num_layers == 2
    assert HeadSpec.from_config(VerifierConfig(num_layers=2), 8, "gru").num_layers == 1


def test_projection_shrinks_the_head():
    big = build_head(HeadSpec.from_config(VerifierConfig(hidden_size=64), 2048, "deep-bilstm"))
    small = build_head(HeadSpec.from_config(VerifierConfig(hidden_size=64, proj_dim=128), 2048, "deep-bilstm"))
    assert count_parameters(small) < count_parameters(big) / 2
    assert small(torch.randn(2, 8, 2048)).shape == (2,)


def test_bidirectional_head_reads_both_directions():
    torch.manual_seed(0)
    head = build_head(HeadSpec.from_config(VerifierConfig(hidden_size=8, dropout=0.0), 4, "bilstm")).eval()
    x = torch.randn(1, 6, 4)
    # Changing only the first step changes the output through the forward direction, the last through the backward.
    y0 = head(x)
    x_first, x_last = x.clone(), x.clone()
    x_first[0, 0] += 1
    x_last[0, -1] += 1
    assert not torch.allclose(head(x_first), y0) and not torch.allclose(head(x_last), y0)
