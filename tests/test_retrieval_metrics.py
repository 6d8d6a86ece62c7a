"""Recall@K / mR against a hand-checked similarity matrix (ties, several captions per image)."""

import pytest
import torch

from fedrs.evaluate.retrieval import retrieval_scores, scores_from_similarity

# 3 images, 5 captions: image 0 has captions 0 and 1, image 1 caption 2, image 2 captions 3 and 4
CAPTION_IMAGE = [0, 0, 1, 2, 2]
S = torch.tensor([
    [0.9, 0.1, 0.9, 0.2, 0.3],   # best own 0.9 (c0) ties with c2 -> rank 1 (pessimistic)
    [0.5, 0.4, 0.3, 0.6, 0.1],   # own c2 = 0.3; c0, c1, c3 higher -> rank 3
    [0.0, 0.1, 0.2, 0.2, 0.7],   # best own c4 = 0.7; its other caption c3 ties c2 but is own -> 0
])
# text->image (columns): c0 0 | c1 0.1 vs 0.4, 0.1 (tie) -> 2 | c2 0.3 vs 0.9 -> 1
#                        c3 0.2 vs 0.2 (tie), 0.6 -> 2 | c4 -> 0


def test_hand_checked_ranks_and_recalls():
    s = scores_from_similarity(S, CAPTION_IMAGE, ks=(1, 2, 5))
    assert s.i2t_ranks.tolist() == [1, 3, 0]
    assert s.t2i_ranks.tolist() == [0, 2, 1, 2, 0]
    assert s.i2t == pytest.approx({1: 100 / 3, 2: 200 / 3, 5: 100.0})
    assert s.t2i == pytest.approx({1: 40.0, 2: 60.0, 5: 100.0})
    assert s.mr == pytest.approx(400 / 6)
    assert set(s.as_row()) == {"i2t_r1", "i2t_r2", "i2t_r5", "t2i_r1", "t2i_r2", "t2i_r5", "mR"}


def test_batching_does_not_change_results():
    full = scores_from_similarity(S, CAPTION_IMAGE, batch_size=1000)
    tiny = scores_from_similarity(S, CAPTION_IMAGE, batch_size=1)
    assert torch.equal(full.i2t_ranks, tiny.i2t_ranks) and torch.equal(full.t2i_ranks, tiny.t2i_ranks)


def test_features_path_matches_similarity_path():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(9, 8, generator=g)
    cap = [0, 0, 1, 1, 2, 2, 3, 3, 3]
    sim = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    a = retrieval_scores(img, txt, cap, batch_size=3)
    b = scores_from_similarity(sim, cap)
    assert torch.equal(a.i2t_ranks, b.i2t_ranks) and torch.equal(a.t2i_ranks, b.t2i_ranks)


def test_ties_are_pessimistic_and_validation():
    s = scores_from_similarity(torch.ones(3, 5), CAPTION_IMAGE)
    assert s.i2t[1] == 0.0 and s.t2i[1] == 0.0  # a constant model earns nothing
    assert s.i2t[5] == 100.0                    # at most 3 non-relevant captions tie
    with pytest.raises(ValueError):
        scores_from_similarity(S, [0, 0, 1, 2, 3])
    with pytest.raises(ValueError):
        scores_from_similarity(S, CAPTION_IMAGE, ties="random")


def test_optimistic_ties_count_only_strictly_higher():
    s = scores_from_similarity(S, CAPTION_IMAGE, ties="optimistic")
    assert s.i2t_ranks.tolist() == [0, 3, 0]        # image 0's tie with c2 no longer counts
    assert s.t2i_ranks.tolist() == [0, 1, 1, 1, 0]  # c1 and c3 lose their tied competitor
    assert scores_from_similarity(torch.ones(3, 5), CAPTION_IMAGE, ties="optimistic").mr == 100.0


# -- the papers' argsort convention and the three conventions side by side ----------------------------

def papers_ranks(sim: torch.Tensor, caption_image) -> tuple[list[int], list[int]]:
    """The VSE++/SCAN evaluation loop (``inds = np.argsort(d)[::-1]``, first relevant position),
    written out with a stable sort, for any number of captions per image."""
    import numpy as np

    s = sim.double().numpy()
    owner = np.asarray(caption_image)
    i2t = [int(min(np.where(np.argsort(s[i], kind="stable")[::-1] == j)[0][0] for j in np.where(owner == i)[0]))
           for i in range(s.shape[0])]
    t2i = [int(np.where(np.argsort(s[:, j], kind="stable")[::-1] == owner[j])[0][0]) for j in range(s.shape[1])]
    return i2t, t2i


def test_argsort_ties_follow_the_papers_order_on_the_hand_matrix():
    s = scores_from_similarity(S, CAPTION_IMAGE, ties="argsort")
    # image 0: its c0 ties c2, which has the higher index and so comes first -> rank 1
    assert s.i2t_ranks.tolist() == [1, 3, 0]
    # c1 ties image 2 (higher index than its own image 0: counted) -> 2;
    # c3 ties image 0 (lower index than its own image 2: not counted) -> 1
    assert s.t2i_ranks.tolist() == [0, 2, 1, 1, 0]
    assert (s.i2t_ranks.tolist(), s.t2i_ranks.tolist()) == papers_ranks(S, CAPTION_IMAGE)


def test_argsort_lies_between_the_bounds_and_matches_the_loop_on_tied_matrices():
    # a constant model: image 0's captions are 0 and 1, so the tied captions 2..4 come first
    const = scores_from_similarity(torch.ones(3, 5), CAPTION_IMAGE, ties="argsort")
    assert const.i2t_ranks.tolist() == [3, 2, 0] and const.t2i_ranks.tolist() == [2, 2, 1, 0, 0]
    # two relevant captions tied at the best score: the later one is the first relevant position
    row = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.0, 0.0, 0.9]])
    assert scores_from_similarity(row, [1, 0, 0, 1], ties="argsort").i2t_ranks.tolist() == [1, 0]
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        sim = torch.randint(0, 4, (6, 15), generator=g).float() / 4  # few levels: many ties
        cap = torch.arange(6).repeat_interleave(torch.tensor([3, 2, 3, 2, 3, 2]))
        by = {t: scores_from_similarity(sim, cap, ties=t, batch_size=4)
              for t in ("pessimistic", "optimistic", "argsort")}
        assert (by["argsort"].i2t_ranks.tolist(), by["argsort"].t2i_ranks.tolist()) == papers_ranks(sim, cap)
        for key in ("i2t_ranks", "t2i_ranks"):
            lo, mid, hi = (getattr(by[t], key) for t in ("optimistic", "argsort", "pessimistic"))
            assert torch.all(lo <= mid) and torch.all(mid <= hi)


def test_scores_by_ties_is_one_pass_of_each_convention_and_tie_row_names_them():
    from fedrs.evaluate.retrieval import TIES, scores_by_ties, tie_row

    g = torch.Generator().manual_seed(1)
    img = torch.randn(4, 8, generator=g)
    txt = torch.randn(7, 8, generator=g)
    txt[3] = txt[0] = img[0] + img[1]  # one caption string used by images 0 and 1: exact ties
    cap = [0, 0, 1, 1, 2, 2, 3]
    by = scores_by_ties(img, txt, cap, batch_size=3)
    assert set(by) == set(TIES)
    for t in TIES:
        single = retrieval_scores(img, txt, cap, ties=t)
        assert torch.equal(by[t].i2t_ranks, single.i2t_ranks) and torch.equal(by[t].t2i_ranks, single.t2i_ranks)
    row = tie_row(by)
    assert row["mR"] == by["pessimistic"].mr and row["mR_optimistic"] == by["optimistic"].mr
    assert row["i2t_r1_argsort"] == by["argsort"].i2t[1] and "mR_pessimistic" not in row
    assert row["mR_optimistic"] >= row["mR_argsort"] >= row["mR"]
    assert by["optimistic"].i2t_ranks[:2].tolist() != by["pessimistic"].i2t_ranks[:2].tolist()
    with pytest.raises(ValueError, match="ties"):
        scores_by_ties(img, txt, cap, ties=("pessimistic", "random"))
