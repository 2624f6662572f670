"""Operator families: one module each, registered with its spec; the configuration model and the
command line's flags are generated from the specs; every family has a case in the shared registry."""

import pytest
import torch
from conftest import OPERATOR_CASES
from pydantic import Field

import scoreinv
from scoreinv.config import OperatorConfig
from scoreinv.operators import FAMILIES, OPERATORS, LinearOperator, OperatorSpec, register_family
from scoreinv.operators import registry as registry_module
from scoreinv.operators.base import ComposedOperator


def _parts(operator):
    if isinstance(operator, ComposedOperator):
        return [*_parts(operator.outer), *_parts(operator.inner)]
    return [operator]


def test_every_registered_family_has_a_case_in_the_shared_operator_registry():
    covered = {type(part) for case in OPERATOR_CASES for part in _parts(case.operator)}
    missing = [family.kind for family in FAMILIES.values() if family.operator not in covered]
    assert not missing, f"add a case for the families {missing} to OPERATOR_CASES in tests/conftest.py"


def test_each_family_is_exported_rebuilt_and_described():
    for family in FAMILIES.values():
        name = family.operator.__name__
        assert getattr(scoreinv, name) is family.operator and getattr(scoreinv.operators, name) is family.operator
        assert name in OPERATORS and family.modality in ("ct", "colour", None)  # None: any prior


def test_the_operator_configuration_is_generated_from_the_specs():
    assert set(OperatorConfig.model_fields) == {"kind", "noise_std"} | {
        name for family in FAMILIES.values() for name in family.spec.model_fields}
    assert OperatorConfig().kind == "radon" and OperatorConfig().build(64, 1).config() == scoreinv.RadonOp(23, 64).config()
    arc = OperatorConfig(kind="radon", views=30, arc=2.0, detector_spacing=1.5).build(32, 1)
    assert arc.n_views == 30 and float(arc.measured_angles[-1]) == pytest.approx(2.0 * 29 / 30)
    with pytest.raises(ValueError, match="fraction belongs to operator kind 'mask', not 'radon'"):
        OperatorConfig(kind="radon", fraction=0.3)
    with pytest.raises(ValueError, match="needs exactly one of fraction"):
        OperatorConfig(kind="mask")
    with pytest.raises(ValueError, match="kind"):
        OperatorConfig(kind="blur")


class Scale(LinearOperator):
    modality = "ct"

    def __init__(self, factor, size=None):
        shape = None if size is None else (1, size, size)
        super().__init__(shape, shape)
        self.factor = factor

    def _forward(self, x):
        return self.factor * x

    _adjoint = _forward

    @classmethod
    def from_config(cls, config):
        return cls(config["factor"], config["in_shape"][-1])


class ScaleSpec(OperatorSpec):
    factor: float = Field(2.0, gt=0, description="the factor")
    views: int = Field(5, ge=1, description="not used")

    def build(self, image_size, channels):
        return Scale(self.factor, image_size)


def test_a_new_family_is_one_registration(monkeypatch):
    from scoreinv.app.cli import parser as parser_module

    monkeypatch.setattr(registry_module, "FAMILIES", dict(FAMILIES))
    monkeypatch.setattr(registry_module, "OPERATORS", dict(OPERATORS))
    register_family("scale", Scale, ScaleSpec)
    with pytest.raises(ValueError, match="operator family named 'scale' is already registered"):
        register_family("scale", Scale, ScaleSpec)

    class Clash(OperatorSpec):
        views: float = 1.0

    with pytest.raises(ValueError, match="field 'views' has another type"):
        register_family("clash", Scale, Clash)
    model = registry_module.operator_config_model(default="radon")
    assert model.field_owners["views"][0] == "radon" and model.field_owners["views"][-1] == "scale"
    assert model.field_owners["factor"] == ("scale",)
    built = model(kind="scale", factor=3.0).build(4, 1)
    assert isinstance(built, Scale) and torch.equal(built(torch.ones(1, 1, 4, 4)), torch.full((1, 1, 4, 4), 3.0))
    assert model(kind="scale").spec().views == 5 and model(kind="radon").spec().views == 23
    # the command line's flags follow the model
    monkeypatch.setattr(parser_module, "OperatorConfig", model)
    args = parser_module.build_parser().parse_args(["data", "simulate", "in.h5", "out.h5", "--operator", "scale",
                                                    "--factor", "4"])
    flags = parser_module.operator_flags(args)
    assert flags["operator.kind"] == "scale" and flags["operator.factor"] == 4.0
    assert model(**{key.split(".", 1)[1]: value for key, value in flags.items() if value is not None}).factor == 4.0
