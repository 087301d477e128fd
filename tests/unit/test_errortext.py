"""Client-safe error texts: OpenVINO source locations and absolute paths never reach a client."""

from __future__ import annotations

from vinoserve.runtime.errortext import client_text, scrub

READ = (
    "Exception from src/inference/src/cpp/core.cpp:84:\n"
    "Exception from src/inference/src/model_reader.cpp:148:\n"
    'Unable to read the model: "/srv/models/resnet/1/model.xml" Please check that model format: ".xml" '
    "is supported and the model is correct.\n\n"
)
RESHAPE = (
    "Check 'backward_compatible_check || in_out_elements_equal' failed at "
    "src/core/shape_inference/include/reshape_shape_inference.hpp:360:\n"
    "While validating node 'opset1::Reshape Reshape_1 (opset1::Parameter b[0]:f32[2,10]) -> (f32[1,2,5])' "
    "with friendly_name 'Reshape_1':\nShape inference input shapes {[2,10],[3]}\n"
    "Requested output shape [1,2,5] is incompatible with input shape\n"
)


def test_first_meaningful_line_with_file_names_only() -> None:
    assert client_text(READ, "x") == (
        'Unable to read the model: "model.xml" Please check that model format: '
        '".xml" is supported and the model is correct.'
    )
    assert client_text(RESHAPE, "x") == "Requested output shape [1,2,5] is incompatible with input shape"
    assert (
        client_text(PermissionError(13, "Permission denied", "/srv/m/1/model.xml"), "x")
        == "[Errno 13] Permission denied: 'model.xml'"
    )


def test_nothing_left_gives_the_fallback_and_text_is_bounded() -> None:
    assert client_text("Exception from src/core/src/model.cpp:12:\n\n", "cannot read") == "cannot read"
    assert client_text("", "cannot read") == "cannot read"
    assert len(client_text("y" * 10_000, "x")) == 300


def test_scrub_keeps_shapes_ratios_and_relative_names() -> None:
    assert (
        scrub("at src/core/src/layout.cpp:95: shape [1..10] ratio 1/2 in /a/b/c/") == "at  shape [1..10] ratio 1/2 in c"
    )
    assert scrub("model 1/model.xml") == "model 1/model.xml"
