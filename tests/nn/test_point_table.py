import pytest
import torch

from pcfunc.manifolds import Sphere, Torus
from pcfunc.nn import PointTable


def _brute_idw(anchors, values, q, k):
    d2 = torch.cdist(q.double(), anchors.double()).pow(2)
    d2, idx = d2.topk(k, largest=False)
    w = 1.0 / d2.clamp_min(1e-24)
    w = w / w.sum(-1, keepdim=True)
    return (values.double()[idx] * w[..., None]).sum(1)


@pytest.mark.parametrize("manifold,res", [(Sphere(), (13, 24)), (Torus(2), (10, 12))])
def test_point_table_is_inverse_squared_distance_interpolation(manifold, res):
    g = torch.Generator().manual_seed(0)
    anchors = manifold.grid(res).double()
    t = PointTable(anchors, 3, neighbors=4).double()
    with torch.no_grad():
        t.values.normal_(generator=g)
    q = manifold.random(200, generator=g, dtype=torch.float64)
    torch.testing.assert_close(t(q), _brute_idw(anchors, t.values, q, 4))
    torch.testing.assert_close(t(anchors), t.values)  # exact at its points
    assert t(q.view(4, 50, -1)).shape == (4, 50, 3)
    torch.testing.assert_close(t(q.view(4, 50, -1)).reshape(200, 3), t(q))


def test_point_table_gradient_reaches_the_values_read():
    anchors = Sphere().grid((7, 12))
    t = PointTable(anchors, 1, neighbors=3)
    q = Sphere().random(5, generator=torch.Generator().manual_seed(1))
    t(q).sum().backward()
    index, w = t.interpolation(q)
    expected = torch.zeros(t.num_anchors).index_add_(0, index.reshape(-1), w.reshape(-1))
    torch.testing.assert_close(t.values.grad[:, 0], expected)
    assert int((t.values.grad != 0).sum()) <= 15


def test_fit_nearest_sets_each_anchor_to_the_mean_of_its_points():
    g = torch.Generator().manual_seed(2)
    anchors = Sphere().grid((9, 16))
    t = PointTable(anchors, 2)
    with torch.no_grad():
        t.values.fill_(7.0)
    pos = Sphere().random(300, generator=g)
    vals = torch.randn(300, 2, generator=g)
    hit = t.fit_nearest_(pos, vals)
    nearest = torch.cdist(pos.double(), anchors.double()).argmin(1)
    for i in range(t.num_anchors):
        sel = nearest == i
        assert bool(hit[i]) == bool(sel.any())
        want = vals[sel].mean(0) if sel.any() else torch.full((2,), 7.0)
        torch.testing.assert_close(t.values[i].detach(), want)
    # Every training field on the table's own grid: the table returns their mean there.
    fields = torch.randn(5, t.num_anchors, 2, generator=g)
    t.fit_nearest_(anchors.repeat(5, 1), fields.reshape(-1, 2))
    torch.testing.assert_close(t(anchors), fields.mean(0))


def test_point_table_errors_name_the_argument():
    a = Sphere().grid((5, 8))
    with pytest.raises(ValueError, match="anchors must be a non-empty tensor"):
        PointTable(torch.zeros(0, 3), 1)
    with pytest.raises(ValueError, match="anchors must be finite"):
        PointTable(torch.full((4, 3), float("nan")), 1)
    with pytest.raises(ValueError, match="neighbors=99 is more than the 26 anchors"):
        PointTable(a, 1, neighbors=99)
    with pytest.raises(ValueError, match="channels"):
        PointTable(a, 0)
    with pytest.raises(ValueError, match=r"pos must have shape \[..., 3\]"):
        PointTable(a, 1)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pos and values"):
        PointTable(a, 1).fit_nearest_(torch.zeros(4, 3), torch.zeros(4, 2))


def test_the_same_queries_reuse_their_neighbours_and_changed_ones_do_not(monkeypatch):
    import pickle

    import pcfunc.ops as ops

    g = torch.Generator().manual_seed(0)
    table = PointTable(Sphere().grid((19, 36)).double(), 2)
    torch.nn.init.normal_(table.values, generator=g)
    calls = []
    real = ops.knn
    monkeypatch.setattr(ops, "knn", lambda *a, **k: calls.append(1) or real(*a, **k))
    q = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=torch.float64), dim=-1)

    def reference(points):  # brute force, no table
        calls.append(1)
        return _brute_idw(table.anchors, table.values.detach(), points, 4)

    first = table(q)
    again = table(q)
    assert len(calls) == 1 and torch.equal(first, again)  # one search for both
    table(q[:, None].squeeze(1))  # a view of the same memory, same shape: still the same queries
    assert len(calls) == 1
    q.mul_(-1.0)  # changed in place: searched again, the new answer
    torch.testing.assert_close(table(q), reference(q))
    assert len(calls) == 3  # (the reference counted too)
    copy = q.clone()  # other memory with the same values: searched again
    torch.testing.assert_close(table(copy), reference(copy))
    with torch.inference_mode():  # inference tensors carry no version: never cached, still right
        inf = q.clone()
        torch.testing.assert_close(table(inf), table(inf))
    assert len(table._recent) == 3 and len(pickle.loads(pickle.dumps(table))._recent) == 0
    table.RECENT_ROWS = 1200  # a bound on the queries kept: the oldest answers go first
    table(q[:700].clone())
    assert sum(v[1].size(0) for v in table._recent.values()) <= 1200 and len(table._recent) == 2
    big = torch.nn.functional.normalize(torch.randn(1500, 3, generator=g, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(table(big), reference(big))  # larger than the bound: answered, not kept
    assert all(v[0] is not big for v in table._recent.values())
