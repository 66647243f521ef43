"""ComfyUI nodes that use a polyiap student text encoder in place of the base model's CLIP.

Copy this folder to ``ComfyUI/custom_nodes/`` and the ``.safetensors`` file written by
``polyiap export --format single-file`` to ``ComfyUI/models/text_encoders/``. The rest of a Stable
Diffusion graph (checkpoint loader, KSampler, VAE decode) stays as it is.
"""

from .encoder import PolyiapTextEncoder

_LOADED: dict[str, PolyiapTextEncoder] = {}


def _device():
    try:
        import comfy.model_management as model_management
    except ImportError:
        return "cpu"
    return model_management.text_encoder_device()


class PolyiapTextEncoderLoader:
    """Loads a polyiap single-file text encoder from the text_encoders model folder."""

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"encoder_name": (folder_paths.get_filename_list("text_encoders"),)}}

    RETURN_TYPES = ("POLYIAP_TEXT_ENCODER",)
    FUNCTION = "load"
    CATEGORY = "loaders"

    def load(self, encoder_name):
        import folder_paths

        path = folder_paths.get_full_path("text_encoders", encoder_name)
        if path is None:
            raise FileNotFoundError(f"text encoder {encoder_name!r} not found in the text_encoders model folder")
        if path not in _LOADED:
            _LOADED[path] = PolyiapTextEncoder(path, _device())
        return (_LOADED[path],)


class PolyiapTextEncode:
    """Encodes a prompt in the student's language into a CONDITIONING for KSampler, like CLIP Text Encode."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}),
                             "text_encoder": ("POLYIAP_TEXT_ENCODER",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, text_encoder, text):
        states, pooled = text_encoder.encode(text)
        return ([[states, {"pooled_output": pooled}]],)


NODE_CLASS_MAPPINGS = {"PolyiapTextEncoderLoader": PolyiapTextEncoderLoader,
                       "PolyiapTextEncode": PolyiapTextEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"PolyiapTextEncoderLoader": "Load polyiap Text Encoder",
                              "PolyiapTextEncode": "polyiap Text Encode"}
