"""Delivery: submitting the pipeline to Kubeflow Pipelines and promoting models via git.

`submit` drives a Kubeflow Pipelines endpoint with `kfp.Client`; `gitops` edits the
kustomize overlays in manifests/ (the state Argo CD syncs) to promote a model from one
environment to the next and to finish or roll back a canary.
"""
