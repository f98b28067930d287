# The consumer programs, the same whichever way logsync was taken in.
add_executable(consumer ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
target_link_libraries(consumer PRIVATE logsync::logsync)

if(TARGET logsync::raft)
  add_executable(consumer_raft ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
  target_compile_definitions(consumer_raft PRIVATE LOGSYNC_CONSUMER_RAFT)
  target_link_libraries(consumer_raft PRIVATE logsync::raft)
endif()
