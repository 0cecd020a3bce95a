"""A study's MONAI bundle: the configs that MONAI's own config parser builds, and nothing of medseg.

- :mod:`.preprocess`: medseg's reading and preprocessing as MONAI transforms, or a refusal naming
  the step that has no exact equivalent;
- :mod:`.inference`: ``configs/inference.json`` (the model zoo's layout: evaluator, data loader,
  sliding-window inferer, post-processing, writer);
- :mod:`.fold_stack`: the one network of the bundle, the fold networks side by side (copied into
  the bundle as ``scripts/fold_stack.py``; torch only);
- :mod:`.metadata`: ``configs/metadata.json`` and an offline JSON schema.

The fold ensemble. A bundle holds one network and one state dict (``models/model.pt``), which
``verify_net_in_out``, ``ckpt_export``, MONAI Label (``network_def`` + ``model.pt``) and MONAI
Deploy (``model.ts``) all take. Neither torch nor MONAI has a module that feeds one input to
several networks and can be built from keyword arguments alone (``torch.nn.Sequential`` takes
positional ones; MONAI's ``EnsembleEvaluator`` runs several networks but is not a network), so the
bundle ships a twelve-line torch module in ``scripts/``, the model zoo's place for code of a
bundle's own. It concatenates the folds' logits; after the inferer has blended each fold's logits
over overlapping windows, plain MONAI transforms take each fold's softmax and their mean, which
is what ``medseg predict`` computes, to the last voxel.
"""
