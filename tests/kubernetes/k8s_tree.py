"""Where the manifests are: the kustomize base and every overlay, as the Kubernetes tests render them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "kubernetes"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
TARGETS = [K8S / "base"] + OVERLAYS
TARGET_IDS = [str(p.relative_to(K8S)) for p in TARGETS]
