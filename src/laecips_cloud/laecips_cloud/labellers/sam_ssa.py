# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
SAM + SSA labelling: SAM's class-agnostic masks vote with a semantic label map.

The masks come from the official ``segment_anything`` automatic mask generator (a grid of
point prompts, quality filters, box NMS); each mask then takes the majority class of a label
map inside it (:mod:`laecips_cloud.voting`). The label map is a semantic labeller's
prediction (``vote_with='semantic'``, default ``espnet_c``) or the edge's own label map sent
with the hard frame (``vote_with='edge'``, the reference code's ``sam_predict`` variant;
frames without one fall back to the semantic labeller).

Checkpoints: ``checkpoint`` is the path of an official SAM checkpoint (``sam_download``
fetches them) and ``model_type`` its size (``vit_b``, ``vit_l``, ``vit_h``). ``model_type=
'tiny'`` builds a tiny random-init SAM from the same official modules for tests (small
input, 2 encoder blocks); its masks are meaningless but exercise the whole real code path.

GPU tuning (``bf16``, ``points_per_batch``, ``batch_encoder``): the image encoder and mask
decoder run under bf16 autocast, the mask decoder takes large prompt batches, and the image
encoder runs once for a whole batch of frames; everything else is the official generator.
"""

from __future__ import annotations

import contextlib
from functools import partial
import os
from typing import Any, Sequence

import numpy as np
import torch

from laecips_cloud import voting
from laecips_cloud.labellers import Labeller, create, resolve_device
from laecips_cloud.tv_shim import import_segment_anything
from laecips_core.classes import CAMVID

MODEL_TYPES = ('vit_b', 'vit_l', 'vit_h', 'tiny')

# Quality filters for the tiny random-init model: off, so its random masks survive.
TINY_FILTERS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7)


def build_tiny_sam(seed: int = 0, img_size: int = 128) -> torch.nn.Module:
    """Return a tiny random-init SAM built from segment_anything's own modules."""
    import_segment_anything()
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        dim, patch = 32, 16
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=2, embed_dim=64, img_size=img_size, mlp_ratio=2,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                patch_size=patch, qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,),
                window_size=4, out_chans=dim),
            prompt_encoder=PromptEncoder(
                embed_dim=dim, image_embedding_size=(img_size // patch, img_size // patch),
                input_image_size=(img_size, img_size), mask_in_chans=8),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64,
                                              num_heads=2),
                transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    finally:
        torch.random.set_rng_state(g)
    return sam.eval()


def build_sam(model_type: str, checkpoint: str | os.PathLike | None,
              allow_random: bool = False) -> torch.nn.Module:
    """Build an official SAM and load its checkpoint (weights_only=True)."""
    if model_type == 'tiny':
        sam = build_tiny_sam()
        if checkpoint:  # e.g. a tiny checkpoint round-tripped through sam_download
            sam.load_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True))
        return sam
    if model_type not in MODEL_TYPES:
        raise ValueError(f'sam model_type must be one of {MODEL_TYPES}, not {model_type!r}')
    sa = import_segment_anything()
    if not checkpoint or not os.path.isfile(checkpoint):
        if not allow_random:
            raise FileNotFoundError(
                f'SAM checkpoint not found: {checkpoint!r} (fetch one with `sam_download '
                f'--model {model_type}`)')
        return sa.sam_model_registry[model_type]().eval()  # random weights: benchmarks only
    sam = sa.sam_model_registry[model_type]()
    sam.load_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True))
    return sam.eval()


def _predictor_class():
    sa = import_segment_anything()

    class Predictor(sa.SamPredictor):
        """SamPredictor with optional bf16 autocast and features computed for a batch."""

        def __init__(self, model, bf16: bool = False):
            super().__init__(model)
            self.bf16 = bf16
            self.preset: list[tuple[torch.Tensor, tuple, tuple]] = []

        def _autocast(self):
            if self.bf16:
                return torch.autocast(self.device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        @torch.no_grad()
        def encode_batch(self, images: Sequence[np.ndarray]) -> None:
            """Run the image encoder once for all frames; generate() then uses them in order."""
            xs, sizes = [], []
            for im in images:
                t = self.transform.apply_image(im)
                t = torch.as_tensor(t, device=self.device).permute(2, 0, 1).contiguous()
                sizes.append((im.shape[:2], tuple(t.shape[-2:])))
                xs.append(self.model.preprocess(t[None]))
            with self._autocast():
                feats = self.model.image_encoder(torch.cat(xs))
            self.preset = [(feats[i:i + 1], *sizes[i]) for i in range(len(images))]

        def set_image(self, image: np.ndarray, image_format: str = 'RGB') -> None:
            if self.preset:
                feats, orig, inp = self.preset.pop(0)
                if tuple(orig) != tuple(image.shape[:2]):
                    raise RuntimeError('batched SAM features out of step with the frames')
                self.reset_image()
                self.original_size, self.input_size = tuple(orig), tuple(inp)
                self.features, self.is_image_set = feats, True
                return
            with self._autocast():
                super().set_image(image, image_format)

        def predict_torch(self, *args, **kwargs):
            with self._autocast():
                masks, iou, low = super().predict_torch(*args, **kwargs)
            # The generator converts its results to numpy, which has no bfloat16.
            return masks.float(), iou.float(), low.float()

    return Predictor


class SamSsaLabeller(Labeller):
    """
    SAM masks + majority vote of a semantic label map inside each mask.

    Parameters: ``checkpoint``, ``model_type`` (vit_b/vit_l/vit_h/tiny), ``points_per_side``,
    ``points_per_batch``, ``pred_iou_thresh``, ``stability_score_thresh``, ``box_nms_thresh``,
    ``min_mask_region_area`` (official generator settings; the tiny model defaults to
    :data:`TINY_FILTERS`), ``vote_with`` ('semantic' or 'edge'), ``semantic`` (a labeller
    name or instance; default 'espnet_c'), ``weights`` (the semantic labeller's weights),
    ``semantic_params`` (more of its parameters), ``device``, ``bf16``, ``batch_encoder``,
    ``allow_random`` (random SAM weights without a checkpoint: benchmarks only).
    """

    name = 'sam_ssa'

    def __init__(self, checkpoint: str = '', model_type: str = 'vit_h',
                 points_per_side: int = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float | None = None,
                 stability_score_thresh: float | None = None,
                 box_nms_thresh: float | None = None, min_mask_region_area: int = 0,
                 vote_with: str = 'semantic', semantic: str | Labeller = 'espnet_c',
                 weights: str = '', semantic_params: dict[str, Any] | None = None,
                 device: str = 'auto', bf16: bool = False, batch_encoder: bool = False,
                 allow_random: bool = False):
        if vote_with not in ('semantic', 'edge'):
            raise ValueError(f"vote_with must be 'semantic' or 'edge', not {vote_with!r}")
        self.device = resolve_device(device)
        self.vote_with = vote_with
        if isinstance(semantic, Labeller):
            self.semantic = semantic
        else:
            params = dict(semantic_params or {})
            if weights:
                params.setdefault('weights', weights)
            params.setdefault('device', self.device)
            self.semantic = create(semantic, **params)
        self.class_map = getattr(self.semantic, 'class_map', CAMVID)
        sa = import_segment_anything()
        defaults = TINY_FILTERS if model_type == 'tiny' else dict(
            pred_iou_thresh=0.88, stability_score_thresh=0.95, box_nms_thresh=0.7)
        settings = dict(defaults)
        for k, v in (('pred_iou_thresh', pred_iou_thresh),
                     ('stability_score_thresh', stability_score_thresh),
                     ('box_nms_thresh', box_nms_thresh)):
            if v is not None:
                settings[k] = float(v)
        sam = build_sam(model_type, checkpoint, allow_random).to(self.device)
        self.predictor = _predictor_class()(sam, bf16=bool(bf16))
        self.generator = sa.SamAutomaticMaskGenerator(
            sam, points_per_side=int(points_per_side), points_per_batch=int(points_per_batch),
            min_mask_region_area=int(min_mask_region_area), output_mode='binary_mask',
            **settings)
        self.generator.predictor = self.predictor  # same model, with our set_image/autocast
        self.batch_encoder = bool(batch_encoder)
        self.model_type = model_type
        #: Per frame of the last batch: masks generated, masks that won a vote.
        self.last_stats: list[dict[str, int]] = []

    def records(self, images: Sequence[np.ndarray]) -> list[list[dict]]:
        """Return SAM's mask records per frame (``segmentation``, ``predicted_iou``, ...)."""
        if self.batch_encoder and len(images) > 1 and len({im.shape for im in images}) == 1:
            self.predictor.encode_batch(images)
        try:
            return [self.generator.generate(im) for im in images]
        finally:
            self.predictor.preset = []

    def masks(self, images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """Return SAM's binary masks (HxW bool) for each frame, any order."""
        return [[a['segmentation'] for a in recs] for recs in self.records(images)]

    def label(self, images: Sequence[np.ndarray],
              edge_labels: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        return [lab for lab, _ in self.label_with_confidence(images, edge_labels)]

    def label_with_confidence(
            self, images: Sequence[np.ndarray],
            edge_labels: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """
        SSA labels with a confidence per pixel.

        Inside a mask that won a vote: SAM's predicted IoU x its stability score x the purity
        of the vote (the winning class's share of the votes), painted in the voting order so
        the mask that set a pixel's class also sets its confidence. Elsewhere: the semantic
        labeller's own confidence (0 where the edge's map was voted with: it has none here).
        """
        edge_labels = list(edge_labels or [None] * len(images))
        use_edge = [self.vote_with == 'edge' and e is not None and e.shape == im.shape[:2]
                    for im, e in zip(images, edge_labels)]
        need = [i for i, u in enumerate(use_edge) if not u]
        sem = dict(zip(need, self.semantic.label_with_confidence([images[i] for i in need]))
                   ) if need else {}
        all_records = self.records(images)
        void = self.class_map.void
        out, self.last_stats = [], []
        for i, recs in enumerate(all_records):
            base, conf = (edge_labels[i], None) if use_edge[i] else sem[i]
            masks = [r['segmentation'] for r in recs]
            refined, chosen = voting.vote_details(base, masks, ignore=(void, 255))
            refined[refined == 255] = void  # edge pixels without a label and no mask vote
            conf = (np.zeros(base.shape, np.float32) if conf is None
                    else np.array(conf, np.float32))
            for j in voting.mask_order(masks):
                if chosen[j] < 0:
                    continue
                m = np.asarray(masks[j], bool)
                votes = np.bincount(base[m], minlength=256)
                votes[[void, 255]] = 0
                purity = votes[chosen[j]] / max(1, votes.sum())
                q = float(recs[j].get('predicted_iou', 1.0)) * float(
                    recs[j].get('stability_score', 1.0)) * float(purity)
                conf[m] = min(1.0, max(0.0, q))
            out.append((refined, conf))
            self.last_stats.append({'masks': len(masks),
                                    'voted': sum(c >= 0 for c in chosen),
                                    'changed': int(np.count_nonzero(refined != base))})
        return out
