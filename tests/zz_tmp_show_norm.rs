#[test]
fn show() {
    for c in ["absval","bnll","clip","elu_alpha0.5","exp_base2_scale_shift","exp_base_e","log_base2_scale_shift","log_natural","power_2_scale0.5_shift1","prelu_channel_shared","prelu_per_channel","swish_beta1.5","threshold_0.2","batchnorm_test_global_stats","batchnorm_train","scale_learned_bias","scale_two_bottoms","bias_learned","bias_two_bottoms","mvn_across_channels","mvn_default","mvn_no_variance"] {
        println!("{}", rcaffe::testing::golden::run_case(c).unwrap().summary());
    }
}
