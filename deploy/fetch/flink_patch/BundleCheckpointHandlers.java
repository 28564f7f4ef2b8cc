/*
 * paybeam's replacement for Beam 2.70's org.apache.beam.runners.fnexecution.control.BundleCheckpointHandlers
 * (beam-runners-java-fn-execution 2.70.0, Apache License 2.0), compiled by deploy/fetch/flink.sh into
 * lib/000-paybeam-flink-runner-patch.jar, which the job server's and the cluster's classpaths list first.
 *
 * Why: 2.70 keeps every bundle's SDF residuals under value states named sdf_checkpoint:<n>:<index> with
 * n counting up for ever, and Flink never forgets a state name once registered: a polling source (the Kafka
 * reader defers after every read call) grows the reading stage's checkpoint, and its synchronous snapshot,
 * for as long as the job runs (apache/beam#27648; fixed upstream after 2.70 by apache/beam#39191, in no
 * runner Maven Central serves here). docs/DESIGN.md 7.
 *
 * What differs: n cycles through RESIDUAL_NAMES values. A name is reused only for another bundle's
 * residual; under one key (the SDF's element: one Kafka partition) a new residual exists only once the
 * previous one's timer has fired and been read (the runner issues no splits), so a reused name never
 * overwrites a residual still waiting. Everything else is 2.70's behaviour: the timer's time (now plus the
 * requested delay's whole seconds), its output timestamp (the lowest output watermark, else the minimum)
 * and the value written.
 */
package org.apache.beam.runners.fnexecution.control;

import java.util.concurrent.atomic.AtomicLong;
import org.apache.beam.model.fnexecution.v1.BeamFnApi.DelayedBundleApplication;
import org.apache.beam.model.fnexecution.v1.BeamFnApi.ProcessBundleResponse;
import org.apache.beam.runners.core.StateInternals;
import org.apache.beam.runners.core.StateInternalsFactory;
import org.apache.beam.runners.core.StateNamespace;
import org.apache.beam.runners.core.StateNamespaces;
import org.apache.beam.runners.core.StateTags;
import org.apache.beam.runners.core.TimerInternals;
import org.apache.beam.runners.core.TimerInternalsFactory;
import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.state.TimeDomain;
import org.apache.beam.sdk.transforms.windowing.BoundedWindow;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.values.WindowedValue;
import org.apache.beam.sdk.values.WindowedValues;
import org.apache.beam.vendor.grpc.v1p69p0.com.google.protobuf.Timestamp;
import org.apache.beam.vendor.guava.v32_1_2_jre.com.google.common.collect.ImmutableList;
import org.joda.time.Duration;
import org.joda.time.Instant;

@SuppressWarnings({"rawtypes", "unchecked"})
public class BundleCheckpointHandlers {

  public static class StateAndTimerBundleCheckpointHandler<T> implements BundleCheckpointHandler {

    public static final String SDF_PREFIX = "sdf_checkpoint";
    /** How many residual state names one stage uses: each is a Flink state registered for good. */
    public static final long RESIDUAL_NAMES = 16;

    private final TimerInternalsFactory<T> timerInternalsFactory;
    private final StateInternalsFactory<T> stateInternalsFactory;
    private final Coder<WindowedValue<T>> residualCoder;
    private final Coder windowCoder;
    private final AtomicLong bundles = new AtomicLong();

    public StateAndTimerBundleCheckpointHandler(
        TimerInternalsFactory<T> timerInternalsFactory,
        StateInternalsFactory<T> stateInternalsFactory,
        Coder<WindowedValue<T>> residualCoder,
        Coder windowCoder) {
      this.timerInternalsFactory = timerInternalsFactory;
      this.stateInternalsFactory = stateInternalsFactory;
      this.residualCoder = residualCoder;
      this.windowCoder = windowCoder;
    }

    public static boolean isSdfTimer(String timerId) {
      return timerId.startsWith(SDF_PREFIX);
    }

    @Override
    public void onCheckpoint(ProcessBundleResponse response) {
      long name = bundles.getAndIncrement() % RESIDUAL_NAMES;
      for (int index = 0; index < response.getResidualRootsCount(); index++) {
        DelayedBundleApplication residual = response.getResidualRoots(index);
        if (residual.hasApplication()) {
          defer(residual, SDF_PREFIX + ":" + name + ":" + index);
        }
      }
    }

    private void defer(DelayedBundleApplication residual, String tag) {
      try {
        WindowedValue<T> element =
            CoderUtils.decodeFromByteArray(
                residualCoder, residual.getApplication().getElement().toByteArray());
        TimerInternals timers = timerInternalsFactory.timerInternalsForKey(element.getValue());
        StateInternals state = stateInternalsFactory.stateInternalsForKey(element.getValue());
        Instant fireAt = Instant.now();
        if (residual.hasRequestedTimeDelay()) {
          fireAt = fireAt.plus(Duration.millis(residual.getRequestedTimeDelay().getSeconds() * 1000));
        }
        long holdMillis = BoundedWindow.TIMESTAMP_MIN_VALUE.getMillis();
        if (!residual.getApplication().getOutputWatermarksMap().isEmpty()) {
          holdMillis = BoundedWindow.TIMESTAMP_MAX_VALUE.getMillis();
          for (Timestamp watermark : residual.getApplication().getOutputWatermarksMap().values()) {
            holdMillis = Math.min(holdMillis, watermark.getSeconds() * 1000);
          }
        }
        for (BoundedWindow window : element.getWindows()) {
          StateNamespace namespace = StateNamespaces.window(windowCoder, window);
          timers.setTimer(
              namespace, tag, "", fireAt, Instant.ofEpochMilli(holdMillis), TimeDomain.PROCESSING_TIME);
          state
              .state(namespace, StateTags.value(tag, residualCoder))
              .write(
                  WindowedValues.of(
                      element.getValue(),
                      element.getTimestamp(),
                      ImmutableList.of(window),
                      element.getPaneInfo()));
        }
      } catch (Exception e) {
        throw new RuntimeException("Failed to set timer/state for the residual", e);
      }
    }
  }
}
