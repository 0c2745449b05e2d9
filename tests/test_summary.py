from canon.summary import block_of, render, summarize


def test_blocks_group_canonical_names():
    assert block_of("stage1.diet0.mask.conv1.weight", 2) == "stage1.diet0"
    assert block_of("conv1.weight", 2) == "conv1"
    assert block_of("head.fc1.bias", 2) == "head.fc1"


def test_summary_totals_and_table():
    s = summarize("m", {"a.x.weight": 10, "a.y.bias": 2, "b.weight": 3}, {"a.x.running_var": 4})
    assert (s["trainable"], s["non_trainable"], s["total"]) == (15, 4, 19)
    assert s["blocks"]["a.x"] == {"trainable": 10, "non_trainable": 4}
    table = render(s)
    assert table.splitlines()[0] == "m" and "total" in table.splitlines()[-1] and "15" in table
