"""Azure Functions app: Event Grid BlobCreated and a daily reconciliation sweep. Logic lives in retier/."""

import logging

import azure.functions as func

from retier.functions import SDK_HTTP_LOGGER, handle_grid_event, run_scheduled_sweep
from retier.settings import sweep_schedule

# The Python worker forwards every record at Information and above to the host, under the one
# category Function.<name>.User, so host.json cannot tell the SDK's request and response dumps
# (two per storage call) from retier's outcome lines: they are turned down here instead.
logging.getLogger(SDK_HTTP_LOGGER).setLevel(logging.WARNING)

app = func.FunctionApp()


@app.function_name(name="retier_blob_created")
@app.event_grid_trigger(arg_name="event")
def retier_blob_created(event: func.EventGridEvent) -> None:
    # Settings errors and transient storage failures raise: the host answers non-2xx and Event
    # Grid redelivers with back-off, so no event is lost while the cause is fixed. Everything
    # else (acted on, deliberately ignored, permanently failed) is logged by the service.
    handle_grid_event(event)


# The schedule is read when the worker indexes the app (RETIER_SWEEP_SCHEDULE, daily by default).
@app.function_name(name="retier_sweep")
@app.timer_trigger(
    arg_name="timer", schedule=sweep_schedule(), run_on_startup=False, use_monitor=True
)
def retier_sweep(timer: func.TimerRequest) -> None:
    # Catches backups made before deployment and events Event Grid gave up on. Logs a summary
    # per container; a container on restore hold is left alone.
    run_scheduled_sweep()
