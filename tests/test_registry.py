import pytest

from polyiap.registry import Registry, UnknownNameError


class Base:
    pass


def make_registry():
    registry = Registry("widget", base=Base)

    @registry.register("alpha")
    class Alpha(Base):
        pass

    @registry.register("beta")
    class Beta(Base):
        pass

    return registry, Alpha


def test_registry_get_and_list():
    registry, alpha = make_registry()
    assert registry.get("alpha") is alpha
    assert registry.names() == ["alpha", "beta"]
    assert "beta" in registry


def test_registry_did_you_mean():
    registry, _ = make_registry()
    with pytest.raises(UnknownNameError) as caught:
        registry.get("alpah")
    message = str(caught.value)
    assert "'alpha'" in message.split("Did you mean")[1]
    assert "Available: alpha, beta" in message


def test_registry_rejects_duplicate_name():
    registry, _ = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("alpha")(type("Other", (Base,), {}))


def test_registry_checks_base_class():
    registry, _ = make_registry()
    with pytest.raises(TypeError, match="subclass of Base"):
        registry.register("gamma")(int)


def test_project_registries_are_filled():
    from polyiap.backbones import BACKBONES
    from polyiap.encoders import ENCODERS
    from polyiap.pivot import LOSSES

    assert {"sd1", "tiny"} <= set(BACKBONES.names())
    assert {"auto", "bert-like", "t5-encoder", "clip-text"} <= set(ENCODERS.names())
    assert LOSSES.names() == ["denoise", "pivot"]
