from pipeline.config import DecisionConfig
from pipeline.decision import RegionDecider


def test_k_of_n_confirmation_and_consistent_score():
    decider = RegionDecider(DecisionConfig(threshold=0.5, confirm_k=2, confirm_n=3))
    v = [decider.update(7, p, frame, frame / 10) for frame, p in enumerate([0.9, 0.2, 0.3, 0.6, 0.1, 0.7])]
    assert [x.verified for x in v] == [True, False, False, True, False, True]
    assert [x.confirmed for x in v] == [False, False, False, False, False, True]
    assert (decider.first_confirmed.frame, decider.first_confirmed.time_s) == (5, 0.5)
    assert decider.verdict == "smoke"
    assert decider.best_score == 0.6  # second best of (0.6, 0.1, 0.7)


def test_regions_are_independent_and_forgotten():
    decider = RegionDecider(DecisionConfig(threshold=0.5, confirm_k=2, confirm_n=2))
    decider.update(1, 0.9, 0, 0.0)
    decider.update(2, 0.9, 0, 0.0)
    assert decider.verdict == "no_smoke"
    decider.forget({2})
    decider.update(1, 0.9, 1, 0.1)
    assert decider.verdict == "no_smoke"  # region 1 restarted
    decider.update(2, 0.9, 1, 0.1)
    assert decider.verdict == "smoke" and decider.best_score == 0.9
