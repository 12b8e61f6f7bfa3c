"""An ablation's arms: factor paths into the model space, and the designs that cross them."""

from search.spec.ablation import arms, set_path


def test_set_path_reaches_every_stage():
    model = {"stages": [{"mixer": "a"}, {"mixer": "b"}], "patch_size": 4}
    set_path(model, "stages[*].mixer", "fourier")
    set_path(model, "stages[1].width", 32)
    assert model == {"stages": [{"mixer": "fourier"}, {"mixer": "fourier", "width": 32}], "patch_size": 4}


def test_one_at_a_time_and_factorial_designs():
    factors = {"model.positional": ["learned", "rope", "none"], "model.stages[*].mixer": ["attention", "fourier"]}
    model = {"stages": [{"depth": 1, "width": 8, "mixer": "attention"}], "positional": "learned"}
    one = arms(factors, "one-at-a-time", model, {})
    assert [a[0] for a in one] == ["base", "positional=rope", "positional=none", "stages[*].mixer=fourier"]
    assert one[3][2]["stages"][0]["mixer"] == "fourier" and one[3][2]["positional"] == "learned"
    full = arms(factors, "factorial", model, {})
    assert len(full) == 6 and full[0][1] == {"model.positional": "learned", "model.stages[*].mixer": "attention"}
