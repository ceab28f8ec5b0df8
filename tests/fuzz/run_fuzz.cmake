# Run one libFuzzer target for a bounded time on a fresh copy of its seed
# corpus (the seeds in the source tree are never written). Variables:
# FUZZER, SEED (the committed corpus), CORPUS (the working copy), ARTIFACTS,
# DICT (empty for none), SECONDS, EXTRA_ARGS (more libFuzzer options).
file(REMOVE_RECURSE ${CORPUS})
file(MAKE_DIRECTORY ${CORPUS} ${ARTIFACTS})
file(GLOB seeds ${SEED}/*)
if(seeds)
  file(COPY ${seeds} DESTINATION ${CORPUS})
endif()
set(args -max_total_time=${SECONDS} -print_final_stats=1 -timeout=30
         -artifact_prefix=${ARTIFACTS}/)
if(DICT)
  list(APPEND args -dict=${DICT})
endif()
list(APPEND args ${EXTRA_ARGS})
execute_process(COMMAND ${FUZZER} ${args} ${CORPUS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); the input that failed is in ${ARTIFACTS}")
endif()
