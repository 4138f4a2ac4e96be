"""The one symbol table: every symbol has a kind and says what it is made of; the explain algebra reads it."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimespec.core.config import AimeConfig
from aimespec.core.dims import evaluate
from aimespec.core.symbols import FREE, SYMBOLS, Kind, in_written_order, kind_of, symbol, symbol_values
from aimespec.explain.algebra import Algebra

NAMES = [s.name for s in SYMBOLS]

configs = st.builds(
    lambda d, td, T, att, down, three: AimeConfig.small(
        input_dim=d, temporal_downsample=td, sequence_length=T, attention_resolution=min(att, d),
        downsample_perceiver=down, use_3d_conv=three),
    st.sampled_from([16, 32, 64]), st.integers(1, 9), st.integers(1, 40), st.integers(1, 16),
    st.sampled_from([1, 2, 4]), st.booleans())


def test_every_symbol_has_a_kind_and_a_unique_name_and_place():
    assert len(set(NAMES)) == len(NAMES)
    assert all(isinstance(s.kind, Kind) for s in SYMBOLS)
    assert sorted(s.written for s in SYMBOLS) == list(range(len(SYMBOLS)))
    assert FREE == {"B", "T"}


@pytest.mark.parametrize(("name", "kind"), [
    ("B", Kind.BATCH), ("T", Kind.TIME), ("T_enc", Kind.TIME), ("C", Kind.CHANNEL), ("H_t", Kind.SPATIAL),
    ("N", Kind.SPATIAL), ("hidden_dim", Kind.WIDTH), ("code_dim", Kind.WIDTH), ("K", Kind.COUNT),
    ("num_layers", Kind.COUNT), ("num_codes", Kind.CODEBOOK)])
def test_kinds(name, kind):
    assert kind_of(name) is kind
    assert symbol(name).kind is kind


def test_kind_of_a_name_that_is_no_symbol():
    assert kind_of("banana") is None
    with pytest.raises(KeyError):
        symbol("banana")


def test_products_name_their_factors():
    assert symbol("N").factors == ("H_att", "W_att")
    assert symbol("H_t").factors == ("H_t",)  # a quotient, not a product: it stands for itself
    assert symbol("T_enc").factors == ("T_enc",)


def test_twins_share_kind_and_value():
    twins = [s for s in SYMBOLS if s.twin]
    assert {s.name for s in twins} == {"W", "W_att", "W_t"}
    cfg = AimeConfig()
    values = symbol_values(cfg)
    for s in twins:
        assert symbol(s.twin).kind is s.kind and values[s.twin] == values[s.name]


@settings(max_examples=60, deadline=None)
@given(configs, st.integers(1, 40))
def test_made_of_evaluates_to_the_value_at_any_config(cfg, T):
    values = symbol_values(cfg, 3, T)
    scope = {**values, "token_downsample": cfg.token_downsample, "temporal_downsample": cfg.temporal_downsample}
    for s in SYMBOLS:
        if s.made_of:
            assert evaluate(s.made_of, scope) == values[s.name], s.name


def test_the_algebra_reads_its_atoms_from_the_table():
    cfg = AimeConfig()
    algebra = Algebra(cfg, symbol_values(cfg))
    atoms = {a.name: a for a in algebra.atoms}
    for s in in_written_order():
        atom = atoms[s.name]
        assert atom.order == s.written and atom.cost == s.rarity
        assert atom.uses == frozenset(s.factors)
    assert atoms["C"].kind == "channel" and atoms["num_codes"].kind == "count"  # how the algebra reads them
    # N is made of H_att and W_att: never written beside either of them in one product
    assert not any("N" in e.text.split("*") and "H_att" in e.text for e in algebra.expressions(21 * 441))
