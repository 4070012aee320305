// CUDA graphs for tch, which does not bind them: libtorch's own
// at::cuda::CUDAGraph (the class behind torch.cuda.CUDAGraph), driven from
// Rust through a handful of C functions. Built as stubs that report an error
// when the libtorch found at build time has no CUDA headers.
//
// Every function returns 0 on success, or 1 with the error's text in `err`.

#include <cstddef>
#include <cstring>
#include <exception>

namespace {
void report(const char* what, char* err, size_t len) {
  if (len == 0) return;
  std::strncpy(err, what, len - 1);
  err[len - 1] = '\0';
}
}  // namespace

#ifdef PIPE_CUDA_GRAPHS

#include <optional>

// Not c10/cuda/CUDAGuard.h: its inline guard class calls the CUDA runtime
// directly, which would make every binary link libcudart itself.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

namespace {
struct PipeGraph {
  at::cuda::CUDAGraph graph;
  // Capture needs a stream other than the default one; warm-up runs on the
  // same stream so that per-stream state (cuBLAS workspaces) exists first.
  c10::cuda::CUDAStream stream;
  // The stream that was current before `enter`, restored by `leave`.
  std::optional<c10::cuda::CUDAStream> previous;
  explicit PipeGraph(c10::DeviceIndex device)
      : stream(c10::cuda::getStreamFromPool(false, device)) {}
};
}  // namespace

#define PIPE_TRY(body)                 \
  try {                                \
    body;                              \
    return 0;                          \
  } catch (const std::exception& e) {  \
    report(e.what(), err, len);        \
    return 1;                          \
  }

extern "C" {

int pipe_cuda_graph_new(int device, void** out, char* err, size_t len) {
  PIPE_TRY(*out = new PipeGraph(static_cast<c10::DeviceIndex>(device)))
}

// Makes the graph's stream this thread's current one, once the device has
// finished everything queued before.
int pipe_cuda_graph_enter(void* g, char* err, size_t len) {
  PIPE_TRY({
    auto* graph = static_cast<PipeGraph*>(g);
    c10::cuda::device_synchronize();
    graph->previous = c10::cuda::getCurrentCUDAStream(graph->stream.device_index());
    c10::cuda::setCurrentCUDAStream(graph->stream);
  })
}

// Waits for the graph's stream and restores the previous current stream.
int pipe_cuda_graph_leave(void* g, char* err, size_t len) {
  PIPE_TRY({
    auto* graph = static_cast<PipeGraph*>(g);
    graph->stream.synchronize();
    if (graph->previous) c10::cuda::setCurrentCUDAStream(*graph->previous);
    graph->previous.reset();
  })
}

int pipe_cuda_graph_capture_begin(void* g, char* err, size_t len) {
  PIPE_TRY(static_cast<PipeGraph*>(g)->graph.capture_begin())
}

int pipe_cuda_graph_capture_end(void* g, char* err, size_t len) {
  PIPE_TRY(static_cast<PipeGraph*>(g)->graph.capture_end())
}

// Launches the recorded kernels on the current stream.
int pipe_cuda_graph_replay(void* g, char* err, size_t len) {
  PIPE_TRY(static_cast<PipeGraph*>(g)->graph.replay())
}

void pipe_cuda_graph_free(void* g) {
  delete static_cast<PipeGraph*>(g);
}

int pipe_cuda_graph_built() { return 1; }

}  // extern "C"

#else

namespace {
const char* kNotBuilt =
    "CUDA graphs are not available: the libtorch `pipe` was built against had no CUDA headers";
}

extern "C" {
int pipe_cuda_graph_new(int, void** out, char* err, size_t len) {
  *out = nullptr;
  report(kNotBuilt, err, len);
  return 1;
}
int pipe_cuda_graph_enter(void*, char* err, size_t len) { report(kNotBuilt, err, len); return 1; }
int pipe_cuda_graph_leave(void*, char* err, size_t len) { report(kNotBuilt, err, len); return 1; }
int pipe_cuda_graph_capture_begin(void*, char* err, size_t len) { report(kNotBuilt, err, len); return 1; }
int pipe_cuda_graph_capture_end(void*, char* err, size_t len) { report(kNotBuilt, err, len); return 1; }
int pipe_cuda_graph_replay(void*, char* err, size_t len) { report(kNotBuilt, err, len); return 1; }
void pipe_cuda_graph_free(void*) {}
int pipe_cuda_graph_built() { return 0; }
}

#endif
