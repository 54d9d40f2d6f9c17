import torch

from model.network.backbone import (
    build_backbone,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_imagenet,
)


def test_pyramid_strides_and_channels():
    backbone = build_backbone("resnet18", fpn_channels=32, pretrained=False)
    levels = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(x.shape) for x in levels.values()] == [
        (1, 32, 16, 24),
        (1, 32, 8, 12),
        (1, 32, 4, 6),
        (1, 32, 2, 3),
    ]


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    import timm

    backbone = build_backbone("efficientnet_lite0", fpn_channels=16, pretrained=True)
    source = torch.load(efficientnet_lite0_weights_path(), weights_only=True)
    stem = backbone.body.model.conv_stem.weight
    assert torch.equal(stem, source["_conv_stem.weight"])
    # The full classifier recognises what the features were trained on: the positional mapping
    # preserves the network (a loaded feature extractor equals timm's own features of it).
    features = timm.create_model("efficientnet_lite0", features_only=True, out_indices=(1, 2, 3, 4))
    load_efficientnet_lite0_imagenet(features)
    x = torch.randn(1, 3, 64, 64)
    features.eval()
    backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(backbone.body(x)["p5"], features(x)[-1])


def test_frozen_stages_fix_the_body_up_to_that_output_and_an_sgd_step_leaves_it():
    import pytest

    from model.training.schedule import build_optimizer

    counts = []
    for stages in range(5):
        backbone = build_backbone(
            "efficientnet_lite0", fpn_channels=16, pretrained=True, frozen_stages=stages
        )
        body = backbone.body.model
        counts.append(sum(p.numel() for p in body.parameters() if not p.requires_grad))
        assert all(p.requires_grad for p in backbone.fpn.parameters())
    assert counts[0] == 0 and counts == sorted(counts) and len(set(counts)) == 5
    assert counts[4] == sum(p.numel() for p in body.parameters())  # stage 4: the whole body

    backbone = build_backbone(
        "efficientnet_lite0", fpn_channels=16, pretrained=True, frozen_stages=2
    )
    body = backbone.body.model
    stem_before = body.conv_stem.weight.clone()
    late_before = body.blocks[6][0].conv_pw.weight.clone()
    optimizer = build_optimizer(backbone.parameters(), lr=0.1)
    loss = sum(level.square().mean() for level in backbone(torch.randn(2, 3, 64, 64)).values())
    loss.backward()
    optimizer.step()
    assert torch.equal(body.conv_stem.weight, stem_before)
    assert not torch.equal(body.blocks[6][0].conv_pw.weight, late_before)
    with pytest.raises(ValueError, match="pretrained"):
        build_backbone("resnet18", fpn_channels=16, pretrained=False, frozen_stages=1)
