//! [`Recorder`]: a burn backend that computes nothing. It is burn's router ([`BackendRouter`]),
//! which turns every tensor operation into burn's own description of it ([`OperationIr`]) and
//! hands it to a client; this client only tracks shapes and, while a recording runs on the
//! calling thread, gives each operation to that recording's [`Tape`]. A model built on it runs
//! its forward pass shape-only: every site has its true shape, nothing is computed.
//!
//! burn's descriptions change between burn versions, so they never leave this process: the tape
//! lowers them to the IR at once (or names the operation it cannot lower).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use burn_backend::backend::{DeviceId, DeviceOps, ExecutionError};
use burn_backend::{DType, DTypeUsage, DTypeUsageSet, Shape, TensorData};
use burn_ir::{OperationIr, TensorId, TensorIr};
use burn_router::{BackendRouter, MultiBackendBridge, RouterTensor, RunnerChannel, RunnerClient};

use super::tape::Tape;

/// The recording backend: models on it run shape-only, and the bodies traced on them are
/// recorded (see [`record`](super::record)). Float elements are `f32`, integers `i32`, as on
/// burn's CPU backend.
pub type Recorder = BackendRouter<RecordChannel>;

/// A device of the [`Recorder`] backend. Devices with different `index`es record independently
/// (burn keeps one client per device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordDevice {
    /// Which recording device.
    pub index: u16,
}

impl burn_backend::backend::Device for RecordDevice {
    fn from_id(id: DeviceId) -> Self {
        RecordDevice { index: id.index_id }
    }

    fn to_id(&self) -> DeviceId {
        // A type id no other burn backend uses, so that burn's per-device registries never mix
        // a recording device with a real one.
        DeviceId::new(0x5245, self.index)
    }
}

impl DeviceOps for RecordDevice {}

/// The channel of the [`Recorder`] backend: one [`RecordClient`] per device.
#[derive(Clone, Debug, Default)]
pub struct RecordChannel;

/// Moves nothing: recording devices hold no data to move between backends.
#[derive(Debug)]
pub struct NoBridge;

impl MultiBackendBridge for NoBridge {
    type TensorHandle = ();
    type Device = RecordDevice;

    fn change_backend_float(_: (), _: Shape, _: &RecordDevice) {}
    fn change_backend_int(_: (), _: Shape, _: &RecordDevice) {}
    fn change_backend_bool(_: (), _: Shape, _: &RecordDevice) {}
}

impl RunnerChannel for RecordChannel {
    type Device = RecordDevice;
    type Bridge = NoBridge;
    type Client = RecordClient;
    type FloatElem = f32;
    type IntElem = i32;
    type BoolElem = bool;

    fn name(device: &RecordDevice) -> String {
        format!("record:{}", device.index)
    }

    fn init_client(device: &RecordDevice) -> RecordClient {
        RecordClient { device: *device, state: Arc::new(Mutex::new(ClientState::default())) }
    }

    fn get_tensor_handle(_: &TensorIr, _: &RecordClient) {}

    fn register_tensor(
        client: &RecordClient,
        _: (),
        shape: Shape,
        dtype: DType,
    ) -> RouterTensor<RecordClient> {
        let id = client.create_empty_handle();
        RouterTensor::new(id, shape, dtype, client.clone())
    }
}

/// What a recording device knows: the data of tensors made from data (constants a body may use),
/// and the tape of each thread recording on it.
#[derive(Default)]
pub(crate) struct ClientState {
    next_id: u64,
    /// Tensors made from data, by id, until dropped.
    pub(crate) constants: HashMap<TensorId, TensorData>,
    /// The recordings running, by thread.
    pub(crate) tapes: HashMap<ThreadId, Tape>,
}

/// The client of one recording device (see [`Recorder`]).
#[derive(Clone)]
pub struct RecordClient {
    device: RecordDevice,
    state: Arc<Mutex<ClientState>>,
}

impl std::fmt::Debug for RecordClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordClient").field("device", &self.device).finish_non_exhaustive()
    }
}

impl RecordClient {
    /// The device's state, locked (a panic elsewhere never poisons a recording for good).
    pub(crate) fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RunnerClient for RecordClient {
    type Device = RecordDevice;

    fn register_op(&self, op: OperationIr) {
        let mut state = self.lock();
        let ClientState { constants, tapes, .. } = &mut *state;
        if let OperationIr::Drop(tensor) = &op {
            constants.remove(&tensor.id);
        }
        if let Some(tape) = tapes.get_mut(&std::thread::current().id()) {
            tape.operation(&op, constants);
        }
    }

    fn read_tensor_async(
        &self,
        tensor: TensorIr,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<TensorData, ExecutionError>> + Send>> {
        let mut state = self.lock();
        let ClientState { constants, tapes, .. } = &mut *state;
        let result = if let Some(data) = constants.get(&tensor.id) {
            Ok(data.clone())
        } else if let Some(tape) = tapes.get_mut(&std::thread::current().id())
            && let Some(problem) = tape.host_read(&tensor)
        {
            Err(ExecutionError::Generic { reason: problem, backtrace: Default::default() })
        } else {
            // The model's own host reads (a generation loop's sampled token) see zeros: the pass
            // is shape-only.
            Ok(TensorData::zeros::<f32, _>(tensor.shape.clone()).convert_dtype(tensor.dtype))
        };
        Box::pin(async move { result })
    }

    fn sync(&self) -> Result<(), ExecutionError> {
        Ok(())
    }

    fn create_empty_handle(&self) -> TensorId {
        let mut state = self.lock();
        state.next_id += 1;
        TensorId::new(state.next_id)
    }

    fn register_tensor_data(&self, data: TensorData) -> RouterTensor<Self> {
        let id = self.create_empty_handle();
        let (shape, dtype) = (data.shape.clone(), data.dtype);
        self.lock().constants.insert(id, data);
        RouterTensor::new(id, shape, dtype, self.clone())
    }

    fn device(&self) -> RecordDevice {
        self.device
    }

    fn seed(&self, _seed: u64) {}

    fn dtype_usage(&self, dtype: DType) -> DTypeUsageSet {
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::I32 | DType::I64 | DType::Bool(_) => {
                DTypeUsage::general()
            }
            _ => DTypeUsageSet::empty(),
        }
    }
}
