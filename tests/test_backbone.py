import torch

from model.backbone import (
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
