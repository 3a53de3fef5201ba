#!/usr/bin/env python
"""Train or evaluate an RGSNet detector with Detectron2.

    python tools/train_net.py --config-file configs/coco_res_rgs_50.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/coco_res_rgs_50.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file ... --resume          # continue from OUTPUT_DIR/last_checkpoint

Multi-machine: --num-machines N --machine-rank R --dist-url tcp://HOST:PORT. AMP:
SOLVER.AMP.ENABLED True. Runs on the CPU (MODEL.DEVICE cpu) when no GPU is present.
"""
import logging

import torch

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results

from detectron2.utils import comm

from rgs_detectron import add_rgsnet_config
from rgs_detectron.checkpointer import RGSCheckpointer
from rgs_detectron.engine import RGSTrainer, check_inputs


def setup(args):
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    if cfg.MODEL.DEVICE == "cpu":
        logging.getLogger("detectron2").info("No GPU found: running on the CPU.")
    return cfg


def main(args):
    cfg = setup(args)
    # When resuming, the weights come from OUTPUT_DIR's last checkpoint, not MODEL.WEIGHTS.
    resuming = args.resume and RGSCheckpointer(None, cfg.OUTPUT_DIR).has_checkpoint()
    check_inputs(cfg, eval_only=args.eval_only, check_weights=not resuming)

    if args.eval_only:
        model = RGSTrainer.build_model(cfg)
        RGSCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = RGSTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = RGSTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main():
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
