#!/usr/bin/env python3
"""Loads a pipe checkpoint into the notebook's own LSTMClassifier with
load_state_dict and prints the argmax class of each row of an .npy id matrix
as JSON: the end-to-end test compares them with pipe's predictions.

    check_state_dict.py CHECKPOINT_DIR X.npy
"""
import json, sys

import numpy as np
import torch
from safetensors.torch import load_file

from notebook_model import LSTMClassifier  # the notebook's class, verbatim




ckpt, x_path = sys.argv[1], sys.argv[2]
spec = json.load(open(f"{ckpt}/spec.json"))
model = LSTMClassifier(spec["vocab_size"], spec["embed_dim"], spec["hidden_dim"], spec["num_classes"], spec["pad_id"])
model.load_state_dict(load_file(f"{ckpt}/model.safetensors"), strict=True)
model.eval()
with torch.no_grad():
    preds = model(torch.tensor(np.load(x_path), dtype=torch.long)).argmax(dim=1)
print(json.dumps(preds.tolist()))
