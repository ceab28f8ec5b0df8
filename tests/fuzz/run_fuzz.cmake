# Run one libFuzzer target for a bounded time on a fresh corpus directory,
# seeded from SEED. Variables: FUZZER, CORPUS, SEED, SECONDS, ARTIFACTS.
file(REMOVE_RECURSE ${CORPUS})
file(MAKE_DIRECTORY ${CORPUS} ${ARTIFACTS})
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -print_final_stats=1
          -artifact_prefix=${ARTIFACTS}/ ${CORPUS} ${SEED}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); crashing inputs are in ${ARTIFACTS}")
endif()
